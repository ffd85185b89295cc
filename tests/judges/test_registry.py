"""Judges by `NAME[:ARGUMENT]` with typed options; the study config and CLI that pass them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from vlmalign.config import StudyConfig, load_config
from vlmalign.errors import ConfigError
from vlmalign.judges.base import JudgeInput, Verdict
from vlmalign.judges.options import JudgeOptions, split_judge_name
from vlmalign.judges.registry import (
    JUDGES,
    JudgeRef,
    JudgeSpec,
    build_judge,
    is_graded,
    judge,
    judge_config_hash,
    judge_spec,
    parse_judge_ref,
    parse_judge_refs,
)
from vlmalign.judges.stance import StanceJudge


def test_names_split_at_the_first_colon() -> None:
    assert split_judge_name("stance") == ("stance", None)
    assert split_judge_name("vlm:mini") == ("vlm", "mini")
    assert split_judge_name("vlm:hf:Qwen/Qwen2.5-VL-7B-Instruct") == (
        "vlm",
        "hf:Qwen/Qwen2.5-VL-7B-Instruct",
    )
    assert split_judge_name("ethics-roberta:/w/cm_roberta-large.pt") == (
        "ethics-roberta",
        "/w/cm_roberta-large.pt",
    )


def test_every_judge_of_the_study_is_registered() -> None:
    assert {"stance", "ethics", "ethics-roberta", "vlm"} <= set(JUDGES)
    assert JUDGES["vlm"].uses_model and not JUDGES["ethics-roberta"].uses_model
    assert JUDGES["vlm"].display_name == "vlm:<model name>"
    assert JUDGES["stance"].display_name == "stance"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown judge 'nope'"),
        ("vlm", "judge 'vlm' needs model name: use 'vlm:<model name>'"),
        ("vlm:", "judge 'vlm' needs model name"),
        ("ethics-roberta", "needs path to cm_roberta-large.pt"),
        ("stance:x", "judge 'stance' takes no argument"),
    ],
)
def test_bad_names_are_config_errors(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        judge_spec(name)


def test_options_a_judge_does_not_take_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"'stance' does not take option\(s\) threshold"):
        build_judge("stance", JudgeOptions(threshold=1.0))
    with pytest.raises(ConfigError, match=r"does not take option\(s\) tokenizer \(it takes:"):
        build_judge("vlm:mini", JudgeOptions(tokenizer="roberta-large"))


def test_defaults_only_reach_judges_that_take_them() -> None:
    # The study passes its device and image folder to every judge; rule judges ignore them.
    assert isinstance(build_judge("stance", device="cuda", image_base_dir=Path(".")), StanceJudge)


def test_defaults_never_override_given_options() -> None:
    options = JudgeOptions(device="cpu")
    filled = options.with_defaults(frozenset({"device", "threshold"}), device="cuda", threshold=2)
    assert filled.device == "cpu" and filled.threshold == 2
    assert options.with_defaults(frozenset(), device="cuda") is options


def test_options_are_typed() -> None:
    with pytest.raises(ValueError):
        JudgeOptions.model_validate({"prompt_format": "html"})
    with pytest.raises(ValueError):
        JudgeOptions.model_validate({"thresold": 1.0})


def test_a_spec_accepts_only_real_options() -> None:
    with pytest.raises(TypeError, match="no such option"):
        JudgeSpec(
            "x", "d", "n", lambda argument, options: StanceJudge(), options=frozenset({"thresold"})
        )


@pytest.fixture
def registry_snapshot() -> Iterator[None]:
    """Judges declared by a test are forgotten after it."""
    saved = dict(JUDGES)
    yield
    JUDGES.clear()
    JUDGES.update(saved)


class CutJudge:
    """A judge whose own config is stale about its version (the declaration must win)."""

    name = "cut"

    def __init__(self, cut: str) -> None:
        self.cut = cut

    def config(self) -> dict[str, Any]:
        return {"name": "old name", "version": 1, "cut": self.cut}

    def judge(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        return [Verdict(aligned=True) for _ in inputs]


def declare_cut_judge() -> JudgeSpec:
    """Declared as a plugin would declare it, and registered as a program may (`JUDGES[name]`)."""

    @judge(
        name="cut",
        version=7,
        description="aligned always",
        needs="nothing",
        argument="a cut",
        argument_required=True,
        options=("threshold", "device"),
        graded=True,
    )
    def cut(argument: str | None, options: JudgeOptions) -> CutJudge:
        return CutJudge(argument or "")

    JUDGES["cut"] = cut
    return cut


def test_a_judge_is_declared_once_and_its_config_records_the_declaration(
    registry_snapshot: None,
) -> None:
    declare_cut_judge()
    spec = JUDGES["cut"]
    assert (spec.version, spec.options, spec.graded, spec.display_name) == (
        7,
        frozenset({"threshold", "device"}),
        True,
        "cut:<a cut>",
    )
    built = build_judge("mine=cut:0.3", JudgeOptions(device="cpu"))
    assert isinstance(built, CutJudge) and built.name == "mine"
    assert built.config() == {"name": "cut", "version": 7, "cut": "0.3"}
    assert judge_config_hash(built) == judge_config_hash(build_judge("cut:0.3"))
    assert is_graded(built.config()) and not is_graded({"name": "stance"})
    with pytest.raises(ConfigError, match=r"does not take option\(s\) tokenizer"):
        build_judge("cut:0.3", JudgeOptions(tokenizer="x"))
    with pytest.raises(ConfigError, match="needs a cut"):
        build_judge("cut")
    assert str(JUDGES.origin("cut")) == "(registered in code)"
    assert str(JUDGES.origin("stance")).startswith("vlmalign ")


def test_an_auto_threshold_wraps_the_declared_judge(registry_snapshot: None) -> None:
    declare_cut_judge()
    built = build_judge("cut:0.3", JudgeOptions(threshold="auto"))
    assert built.name == "cut:0.3"
    assert built.config() == {
        "name": "cut",
        "version": 7,
        "cut": "0.3",
        "threshold_auto": {"threshold": None, "fitted_on": ""},
    }


def test_the_registry_loads_no_model_code() -> None:
    code = (
        "import sys\n"
        "from vlmalign.judges.registry import JUDGES, build_judge\n"
        "build_judge('stance')\n"
        "print(sorted({'torch', 'transformers', 'vlmalign.judges.vlm'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- study config -----------------------------------------------------------------------------


def test_study_config_takes_judge_arguments_and_options(tmp_path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "judges": ["stance", "ethics-roberta:/w/cm_roberta-large.pt", "vlm:mini"],
                "judge_options": {
                    "ethics-roberta": {"tokenizer": "/models/roberta-large", "batch_size": 8},
                    "vlm": {"threshold": 0.5, "prompt_format": "chat"},
                },
            }
        )
    )
    cfg = load_config(path)
    # A judge is known by its name as given; options keyed by its kind still reach it.
    assert cfg.judge_names() == ["stance", "ethics-roberta:/w/cm_roberta-large.pt", "vlm:mini"]
    options = cfg.options_by_judge()
    assert options["vlm:mini"] == JudgeOptions(threshold=0.5, prompt_format="chat")
    assert options["ethics-roberta:/w/cm_roberta-large.pt"].tokenizer == "/models/roberta-large"


def test_study_config_rejects_twice_listed_judges_and_stray_options() -> None:
    with pytest.raises(ConfigError, match="judge 'vlm:mini' is listed more than once"):
        load_config(None, {"judges": ["vlm:mini", "stance", "vlm:mini"]})
    with pytest.raises(ConfigError, match="judge_options for 'vlm', which is not in judges"):
        load_config(None, {"judges": ["stance"], "judge_options": {"vlm": {"threshold": 1}}})
    with pytest.raises(ConfigError, match="judge_options"):
        load_config(None, {"judge_options": {"stance": {"thresold": 1}}})
    assert StudyConfig().judge_names() == ["stance", "ethics"]


# --- several judges of one kind: labels and identities ----------------------------------------


@pytest.mark.parametrize(
    ("text", "label", "spec", "kind", "identity"),
    [
        ("small=vlm:mini", "small", "vlm:mini", "vlm", "small"),
        (
            "qwen-2.5_vl=vlm:hf:Qwen/Qwen2-VL-2B-Instruct",
            "qwen-2.5_vl",
            "vlm:hf:Qwen/Qwen2-VL-2B-Instruct",
            "vlm",
            "qwen-2.5_vl",
        ),
        ("vlm:mini", None, "vlm:mini", "vlm", "vlm:mini"),
        ("stance", None, "stance", "stance", "stance"),
        # an '=' after the judge's name belongs to its argument (a path, a hub revision)
        (
            "ethics-roberta:/w/a=b.pt",
            None,
            "ethics-roberta:/w/a=b.pt",
            "ethics-roberta",
            "ethics-roberta:/w/a=b.pt",
        ),
        (
            "paper=ethics-roberta:/w/a=b.pt",
            "paper",
            "ethics-roberta:/w/a=b.pt",
            "ethics-roberta",
            "paper",
        ),
        ("vlm=vlm:mini", "vlm", "vlm:mini", "vlm", "vlm"),  # its own kind may be its label
    ],
)
def test_a_judge_is_named_or_labelled(
    text: str, label: str | None, spec: str, kind: str, identity: str
) -> None:
    ref = parse_judge_ref(text)
    assert (ref.label, ref.spec, ref.kind, ref.identity) == (label, spec, kind, identity)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=vlm:mini", "no label before '='"),
        ("small=", "no judge after '='"),
        ("my judge=vlm:mini", "label 'my judge' may only hold letters, digits"),
        ("a:b=stance", "label 'a:b' may only hold letters, digits, '-', '_' and '.' \\(no ':'"),
        ("é=stance", "label 'é' may only hold"),
        ("human=vlm:mini", "the label 'human' is reserved"),
        ("stance=vlm:mini", "'stance' is the name of another judge"),
    ],
)
def test_bad_labels_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_judge_ref(text)


def test_two_judges_with_one_identity_are_an_error() -> None:
    with pytest.raises(ConfigError, match="judge 'stance' is listed more than once"):
        parse_judge_refs(["stance", "ethics", "stance"])
    with pytest.raises(ConfigError, match="'a=stance' and 'a=ethics' are both named 'a'"):
        parse_judge_refs(["a=stance", "a=ethics"])
    with pytest.raises(ConfigError, match="'stance' and 'stance=stance' are both named 'stance'"):
        parse_judge_refs(["stance", "stance=stance"])
    refs = parse_judge_refs(["small=vlm:mini", "vlm:mini", "stance"])
    assert refs == [JudgeRef("vlm:mini", "small"), JudgeRef("vlm:mini"), JudgeRef("stance")]


def test_built_judge_carries_its_identity_and_its_class_the_kind() -> None:
    labelled = build_judge("rules=stance")
    plain = build_judge("stance")
    assert isinstance(labelled, StanceJudge)
    assert (labelled.name, plain.name, StanceJudge.name) == ("rules", "stance", "stance")
    # The label names the judge; what determines its verdicts (its config) is the same.
    assert labelled.config() == plain.config() == {"name": "stance", "version": 5}
    assert judge_config_hash(labelled) == judge_config_hash(plain)
    with pytest.raises(ConfigError, match=r"judge 'rules' does not take option\(s\) threshold"):
        build_judge("rules=stance", JudgeOptions(threshold=1.0))


def test_study_config_takes_two_judges_of_one_kind(tmp_path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        "judges: [stance, small=vlm:mini, 'vlm:hf:Qwen/Qwen2-VL-2B-Instruct']\n"
        "judge_options:\n"
        "  small: {threshold: 0.5}\n"
        "  vlm:hf:Qwen/Qwen2-VL-2B-Instruct: {prompt_format: chat}\n"
    )
    cfg = load_config(path)
    assert cfg.judge_names() == ["stance", "small", "vlm:hf:Qwen/Qwen2-VL-2B-Instruct"]
    assert cfg.options_by_judge() == {
        "small": JudgeOptions(threshold=0.5),
        "vlm:hf:Qwen/Qwen2-VL-2B-Instruct": JudgeOptions(prompt_format="chat"),
    }
    # From the command line, as `--judge` gives them.
    cfg = load_config(None, {"judges": ["vlm:mini", "vlm:hf:x/y"]})
    assert cfg.judge_names() == ["vlm:mini", "vlm:hf:x/y"]


def test_judge_options_by_kind_need_exactly_one_judge_of_that_kind() -> None:
    one = load_config(
        None, {"judges": ["stance", "q=vlm:mini"], "judge_options": {"vlm": {"threshold": 0.5}}}
    )
    assert one.options_by_judge() == {"q": JudgeOptions(threshold=0.5)}
    two = {"judges": ["small=vlm:mini", "vlm:hf:x/y"], "judge_options": {"vlm": {"threshold": 1}}}
    with pytest.raises(
        ConfigError, match="judge_options for 'vlm' is ambiguous: judges 'small', 'vlm:hf:x/y'"
    ):
        load_config(None, two)
    twice = {"judges": ["vlm:mini"], "judge_options": {"vlm": {}, "vlm:mini": {}}}
    with pytest.raises(ConfigError, match="judge_options for 'vlm:mini' are given twice"):
        load_config(None, twice)
    by_spec = {"judges": ["small=vlm:mini"], "judge_options": {"vlm:mini": {}}}
    with pytest.raises(
        ConfigError, match=r"'vlm:mini', which is not in judges \(key them by 'small'\)"
    ):
        load_config(None, by_spec)
    with pytest.raises(ConfigError, match=r"field 'judges'.*'human' is reserved"):
        load_config(None, {"judges": ["human=stance"]})


# --- CLI ------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # rich would wrap names in a narrow table
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_judges_listing_names_every_judge() -> None:
    listing = run_cli("judges")
    assert listing.returncode == 0, listing.stderr
    for name in ("stance", "ethics", "ethics-roberta:<path to cm_roberta-large.pt>"):
        assert name in listing.stdout
    assert "vlm:<model name>" in listing.stdout
    assert "human" in listing.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--judge", "stance", "--adapter", "a"], "runs no VLM that an adapter could change"),
        (["--judge", "rules=stance", "--adapter", "a"], "the 'stance' judge runs no VLM"),
        (["--judge", "my rules=stance"], "label 'my rules' may only hold letters"),
        (["--judge", "ethics-roberta:x.pt", "--adapter", "a"], "drop --adapter"),
        (["--judge", "stance", "--threshold", "1"], "does not take option(s) threshold"),
        (["--judge", "vlm"], "judge 'vlm' needs model name"),
        (["--judge", "vlm:mini", "--prompt-format", "html"], "--prompt-format:"),
    ],
)
def test_judge_command_errors_are_one_line(args: list[str], fragment: str, tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"question": "Should I?", "response": "Yes."}\n')
    result = run_cli("judge", *args, "--input", str(src), "--output", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and fragment in lines[-1]
    assert "Traceback" not in result.stderr
