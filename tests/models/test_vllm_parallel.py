"""vLLM's tensor and data parallelism for `--engine vllm`: the settings, and that they reach
`vllm.LLM(...)` from a study's config (the stand-in `vllm` of test_vllm_engine records them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_vllm_engine as engine_tests
from PIL import Image

from vlmalign.config import StudyConfig, load_config
from vlmalign.errors import ConfigError
from vlmalign.models.adapters import load_adapter
from vlmalign.models.base import GenerationRequest
from vlmalign.models.registry import load_model
from vlmalign.models.vllm_engine import parallel_settings
from vlmalign.prompts import Prompt
from vlmalign.sampling import SamplingParams

# The stand-in `vllm`, the tiny hf model and its adapters, as test_vllm_engine has them.
FakeLLM = engine_tests.FakeLLM
fake_vllm = engine_tests.fake_vllm
hf_dir = engine_tests.hf_dir
COMMAND = [sys.executable, "-m", "vlmalign"]


# --- the settings ------------------------------------------------------------------------------
def test_one_process_passes_tensor_parallelism_to_vllm() -> None:
    assert parallel_settings(4, 1, processes=1) == {"tensor_parallel_size": 4}
    assert parallel_settings(1, 1, processes=1) == {"tensor_parallel_size": 1}


def test_data_parallelism_needs_a_process_per_gpu() -> None:
    with pytest.raises(ConfigError, match="accelerate launch --num_processes 6"):
        parallel_settings(3, 2, processes=1)


def test_under_a_launcher_every_process_is_one_vllm_rank() -> None:
    assert parallel_settings(2, 4, processes=8) == {
        "tensor_parallel_size": 2,
        "data_parallel_size": 4,
        "distributed_executor_backend": "external_launcher",
    }
    with pytest.raises(ConfigError, match=r"6 processes, but .* 2 x 4 = 8"):
        parallel_settings(2, 4, processes=6)


@pytest.mark.parametrize("field", ["tensor_parallel_size", "data_parallel_size"])
def test_parallel_sizes_are_checked_in_the_config(field) -> None:
    assert getattr(StudyConfig(engine="vllm", **{field: 8}), field) == 8
    assert getattr(StudyConfig(), field) == 1
    with pytest.raises(ConfigError, match=f"command line: field '{field}': .*engine vllm"):
        load_config(None, {field: 2})  # the hf engine has no use for them
    for wrong in (0, 1025):
        with pytest.raises(ConfigError, match=f"field '{field}'"):
            load_config(None, {"engine": "vllm", field: wrong})


# --- what reaches vllm.LLM -----------------------------------------------------------------------
def test_the_settings_reach_the_llm_and_survive_a_lora_restart(
    hf_dir,
    fake_vllm,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "adapter"
    engine_tests._hf_adapter(hf_dir, folder)
    settings = parallel_settings(2, 2, processes=4)
    model = load_model(f"hf:{hf_dir}", "cuda", progress=False, engine="vllm", parallel=settings)
    request = [
        GenerationRequest(Image.new("RGB", (8, 8)), model.render_prompt(Prompt((), "Q"), "chat"), 1)
    ]
    model.generate(request, SamplingParams())
    load_adapter(model, folder)
    model.generate(request, SamplingParams())  # restarts vLLM with LoRA support
    base, lora = FakeLLM.instances
    for llm in (base, lora):
        assert llm.settings["tensor_parallel_size"] == 2
        assert llm.settings["data_parallel_size"] == 2
        assert llm.settings["distributed_executor_backend"] == "external_launcher"
    assert lora.settings["enable_lora"] is True


def test_a_study_config_reaches_the_llm(
    hf_dir,
    fake_vllm,
    tmp_path: Path,
) -> None:
    from vlmalign.study import run_eval

    data = tmp_path / "data.jsonl"
    item = {"id": "q0", "image": "pkg:skimage/data/coffee.png", "question": "Should I share?"}
    item |= {"ideal_answer": "Yes.", "aligned_stance": "yes", "split": "test"}
    data.write_text(json.dumps(item) + "\n")
    config = load_config(
        None,
        {
            "model": f"hf:{hf_dir}",
            "engine": "vllm",
            "tensor_parallel_size": 4,
            "dataset": str(data),
            "samples": 2,
            "judges": ["stance"],
            "device": "cuda",
            "out": tmp_path / "run",
            "conditions": [{"split": "test", "shots": 0}],
        },
        finetune=False,
    )
    result = run_eval(config, progress=False)
    (llm,) = FakeLLM.instances
    assert llm.settings["tensor_parallel_size"] == 4
    assert "data_parallel_size" not in llm.settings  # one process: vLLM runs its own workers
    assert result.main_process and result.generated == 2


def test_parallel_options_are_one_line_errors_without_engine_vllm(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [*COMMAND, "study", "--no-finetune", "--tensor-parallel-size", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last == (
        "error: command line: field 'tensor_parallel_size': vLLM's parallelism: set engine "
        "vllm (--engine vllm) to use it"
    )
    assert not out.exists()
