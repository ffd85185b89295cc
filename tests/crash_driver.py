"""A small study that a test can kill -9 at any moment (tests/test_crash_safety.py).

    python tests/crash_driver.py DATASET OUT_DIR           # one study, in this process
    python tests/crash_driver.py --serve DATASET           # a study per OUT_DIR line on stdin

Runs `vlmalign.study.run_study` on the tiny random model of tests/conftest.py (same weights in
every process), with a short finetune and the stance judge. Before each unit of work it prints
one flushed line — `generate` (a generation batch), `judge` (a judging batch), `finetune` (an
optimizer step) — and pauses briefly, so a harness can aim its kills at each stage. The pauses
and the small judging batches change no result: every response and verdict is keyed and seeded
independently of batching and timing.

`--serve` imports everything once, then forks a fresh child process per study: it prints
`child PID`, the child's lines, then `exit PID CODE` (CODE -9: killed by SIGKILL). The child
opens the store and builds the model itself, so killing it is a real crash of a real process;
the fork only saves the ~10 s of imports that 25 fresh interpreters would cost.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PAUSE_S = 0.02  # per unit of work: widens the windows a kill can land in
JUDGE_BATCH = 4  # judge in several transactions, so a kill can land between them


def study_config(dataset: Path, out: Path) -> Any:
    from vlmalign.config import FinetuneConfig, StudyConfig

    return StudyConfig(
        dataset=str(dataset),
        model="tiny",
        out=out,
        judges=("stance",),
        samples=2,
        seed=3,
        batch_size=2,
        sampling={"max_new_tokens": 4},
        finetune=FinetuneConfig(epochs=2, batch_size=2, lr=5e-3),
        device="cpu",
    )


def say(text: str) -> None:
    """One whole line in one write: the lines of the server and its child never interleave."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), f"{text}\n".encode())


def _announced(what: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        say(what)
        time.sleep(PAUSE_S)
        return function(*args, **kwargs)

    return wrapper


def _install() -> None:
    """Register the tiny model and announce each unit of work (imports everything heavy)."""
    sys.path.insert(0, str(REPO_ROOT))  # `tests.conftest` when run by path
    from transformers import LlamaConfig, LlamaForCausalLM  # (lazy modules: load them now)

    import vlmalign.report.html
    import vlmalign.report.plot
    from tests.conftest import make_tiny_vlm, tiny_tokenizer
    from vlmalign import finetune, study
    from vlmalign.judges.registry import build_judge
    from vlmalign.models import registry
    from vlmalign.models.magma import MagmaModel
    from vlmalign.models.registry import ModelSpec

    build_judge("stance")  # imports its modules
    import accelerate

    del accelerate, LlamaConfig, LlamaForCausalLM, vlmalign  # imported so forks start warm

    def build(load: Any) -> Any:
        return make_tiny_vlm(tiny_tokenizer.__wrapped__())  # the fixture's builder, called

    registry.MODELS["tiny"] = ModelSpec(
        "tiny",
        "tiny random MAGMA",
        "tiny",
        "nothing",
        build,
        capabilities=frozenset({"generate", "score", "train"}),
    )
    MagmaModel.generate = _announced("generate", MagmaModel.generate)  # type: ignore[method-assign]
    study.judge_inputs = _announced("judge", study.judge_inputs)
    study.judge_missing = functools.partial(study.judge_missing, batch_size=JUDGE_BATCH)
    finetune._optimizer_step = _announced("finetune", finetune._optimizer_step)


def _run(dataset: Path, out: Path) -> None:
    import torch

    from vlmalign import study

    torch.set_num_threads(1)  # two cores are shared by the whole test run
    say("ready")
    study.run_study(study_config(dataset, out), progress=False)
    say("done")


def _serve(dataset: Path) -> int:
    for line in sys.stdin:
        out = Path(line.strip())
        pid = os.fork()
        if pid == 0:  # the child: one study, then exit without running the parent's cleanup
            code = 1
            try:
                _run(dataset, out)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        say(f"child {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")
    return 0


def main(argv: list[str]) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # safe to fork
    _install()
    if argv[0] == "--serve":
        return _serve(Path(argv[1]))
    _run(Path(argv[0]), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
