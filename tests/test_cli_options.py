"""Options that set config fields state the config's default, and leave it in force when unset.

The config classes hold every default once; an option that re-declared one could drift from it
(as `eval --samples` once defaulted to 1 while a study's is 5). These tests walk the commands'
options, so an option added later is checked too.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel
from typer.testing import CliRunner

from vlmalign.cli import app
from vlmalign.config import FinetuneConfig, StudyConfig

SAMPLING = type(StudyConfig().sampling)  # the class of the `sampling` section

# What each option of the config-building commands sets, written out here rather than derived
# from the CLI's own code: parameter -> (config class, field).
STUDY_SHARED = {
    "dataset": (StudyConfig, "dataset"),
    "model": (StudyConfig, "model"),
    "prompt_format": (StudyConfig, "prompt_format"),
    "shots_as": (StudyConfig, "shots_as"),
    "device": (StudyConfig, "device"),
}
EXPECTED: dict[str, dict[str, tuple[type[BaseModel], str]]] = {
    "study": {
        **STUDY_SHARED,
        "out_dir": (StudyConfig, "out"),
        "samples": (StudyConfig, "samples"),
        "seed": (StudyConfig, "seed"),
        "engine": (StudyConfig, "engine"),
        "tensor_parallel_size": (StudyConfig, "tensor_parallel_size"),
        "data_parallel_size": (StudyConfig, "data_parallel_size"),
        "adapter": (StudyConfig, "adapter"),
        "judge_names": (StudyConfig, "judges"),
    },
    "eval": {
        **STUDY_SHARED,
        "samples": (StudyConfig, "samples"),
        "seed": (StudyConfig, "seed"),
        "engine": (StudyConfig, "engine"),
        "tensor_parallel_size": (StudyConfig, "tensor_parallel_size"),
        "data_parallel_size": (StudyConfig, "data_parallel_size"),
        "judge_names": (StudyConfig, "judges"),
    },
    "finetune": {
        **STUDY_SHARED,
        "out_dir": (StudyConfig, "out"),
        **{
            name: (FinetuneConfig, name)
            for name in (
                "epochs",
                "batch_size",
                "lr",
                "encoder_lr",
                "loss_on",
                "split",
                "seed",
                "grad_accum",
                "mixed_precision",
                "lora_r",
                "lora_alpha",
                "lora_dropout",
            )
        },
    },
    "ask": {
        "model": (StudyConfig, "model"),
        "engine": (StudyConfig, "engine"),
        "device": (StudyConfig, "device"),
        "prompt_format": (StudyConfig, "prompt_format"),
        "shots_as": (StudyConfig, "shots_as"),
        "temperature": (SAMPLING, "temperature"),
        "max_new_tokens": (SAMPLING, "max_new_tokens"),
    },
    "judges validate": {
        "dataset": (StudyConfig, "dataset"),
        "judge_names": (StudyConfig, "judges"),
    },
}
# Named like a config field, but deliberately its own thing in that command.
OWN_MEANING = {
    ("eval", "out_dir"),  # eval writes to runs/eval, apart from a study
    ("eval", "adapter"),  # the adapter to evaluate, not a study's "adapter instead of training"
    ("eval", "split"),  # eval's conditions: splits x shots, test 0-shot by default
    ("ask", "seed"),  # one answer's sampling seed, not a study seed
    ("ask", "adapter"),  # an adapter to load, never one to train
}
CONFIG_FIELDS = {*StudyConfig.model_fields, *FinetuneConfig.model_fields, *SAMPLING.model_fields}
PARAMETER_FIELD = {"out_dir": "out", "judge_names": "judges"}


def options(path: str) -> dict[str, Any]:
    """The options of a command (`judges validate`: a sub-command), by parameter name."""
    found: Any = typer.main.get_command(app)
    for name in path.split():
        found = found.commands[name]
    return {p.name: p for p in found.params if p.param_type_name == "option"}


def default_of(config: type[BaseModel], field: str) -> Any:
    return config.model_fields[field].get_default(call_default_factory=True)


def as_shown(value: Any) -> str | bool:
    """How help states a default: `[default: (5)]`; nothing for an unset (None) field."""
    if value is None:
        return False
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


@pytest.mark.parametrize("path", list(EXPECTED))
def test_options_state_the_config_defaults(path: str) -> None:
    params = options(path)
    for name, (config, field) in EXPECTED[path].items():
        param = params[name]
        expected = default_of(config, field)
        if param.default is None:  # unset means "the config's value": help must say which
            assert param.show_default == as_shown(expected), f"{path} --{name}"
        else:  # a command without a config file: the default is the config's, read from it
            assert param.default == expected, f"{path} --{name}"
    for name in params:
        if name in EXPECTED[path] or (path, name) in OWN_MEANING:
            continue
        # An option named like a config field must be listed above (and so checked).
        assert PARAMETER_FIELD.get(name, name) not in CONFIG_FIELDS, f"{path} --{name}"


def test_study_and_eval_help_show_the_same_samples_default() -> None:
    runner = CliRunner()
    shown = []
    for name in ("study", "eval"):
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        line = next(line for line in result.output.splitlines() if "--samples" in line)
        shown.append(re.search(r"\[default: ([^\]]*)\]", line).group(1))  # type: ignore[union-attr]
    assert shown == ["(5)", "(5)"]  # StudyConfig.samples, the value docs/statistics.md explains


def test_labels_export_no_longer_lists_csv_but_accepts_it(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["labels", "export", "--help"], env={"COLUMNS": "200"}).output
    assert "--csv" not in help_text and "--output" in help_text
    missing = runner.invoke(app, ["labels", "export", str(tmp_path), "--csv"])
    assert "no study.sqlite here" in str(missing.exception)  # parsed, then the run is checked


# --- the settings a command hands on -----------------------------------------------------------


class Captured:
    """Fake study and finetune modules that record what the commands pass them."""

    def __init__(self) -> None:
        self.config: StudyConfig | None = None
        self.settings: FinetuneConfig | None = None

    def study_module(self) -> types.ModuleType:
        module = types.ModuleType("vlmalign.study")

        def run(config: StudyConfig, adapter: Any = None, progress: bool = True) -> Any:
            self.config = config
            raise SystemExit(0)  # the command's printing needs a real result

        module.run_study = run  # type: ignore[attr-defined]
        module.run_eval = run  # type: ignore[attr-defined]
        module.validate_for_study = lambda config: None  # type: ignore[attr-defined]
        return module

    def finetune_module(self) -> types.ModuleType:
        module = types.ModuleType("vlmalign.finetune")

        def train(vlm: Any, data: Any, out: Path, settings: FinetuneConfig, **_: Any) -> Any:
            self.settings = settings
            raise SystemExit(0)

        module.finetune = train  # type: ignore[attr-defined]
        module.ADAPTER_DIR = "adapter"  # type: ignore[attr-defined]
        return module


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    record = Captured()
    monkeypatch.setitem(sys.modules, "vlmalign.study", record.study_module())
    monkeypatch.setitem(sys.modules, "vlmalign.finetune", record.finetune_module())
    models = types.ModuleType("vlmalign.models.registry")  # every loader returns no model
    models.__getattr__ = lambda name: lambda *args, **kwargs: None  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "vlmalign.models.registry", models)
    return record


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=True)


def test_unset_options_leave_the_config_defaults(captured: Captured) -> None:
    invoke("study")
    assert captured.config == StudyConfig()
    invoke("eval")
    assert captured.config is not None
    assert captured.config.samples == 5 and captured.config.finetune is None
    assert captured.config.out == Path("runs/eval")
    assert [(c.split, c.shots) for c in captured.config.conditions] == [("test", 0)]
    same = {"dataset", "model", "seed", "sampling", "judges", "engine", "device", "batch_size"}
    assert captured.config.model_dump(include=same) == StudyConfig().model_dump(include=same)
    invoke("finetune")
    assert captured.settings == FinetuneConfig()


def test_given_options_override_the_file(captured: Captured, tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("samples: 3\nseed: 4\nfinetune: {lr: 0.01, epochs: 6}\n")
    invoke("study", str(path), "--seed", "9", "--no-finetune", "--judge", "stance")
    assert captured.config is not None
    assert (captured.config.samples, captured.config.seed) == (3, 9)
    assert captured.config.finetune is None and captured.config.judges == ("stance",)
    # finetune's --seed and --batch-size are the training's, not the study's.
    invoke("finetune", str(path), "--epochs", "2", "--seed", "5", "--out", str(tmp_path / "r"))
    assert captured.settings == FinetuneConfig(lr=0.01, epochs=2, seed=5)
    path.write_text("finetune: null\n")  # off in the file: the finetune command uses defaults
    invoke("finetune", str(path), "--batch-size", "4")
    assert captured.settings == FinetuneConfig(batch_size=4)


def test_a_bad_option_value_is_blamed_on_the_command_line(
    captured: Captured, tmp_path: Path
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("samples: 3\n")
    result = invoke("finetune", str(path), "--batch-size", "0")
    assert str(result.exception) == (
        "command line: field 'finetune.batch_size': Input should be greater than or equal to 1"
    )
    path.write_text("samples: 0\n")
    result = invoke("study", str(path), "--seed", "1")
    assert str(result.exception).startswith(f"{path}: field 'samples': ")
