"""The study pipeline end to end on a tiny random model: files, resume, transactional batches."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmalign.config import FinetuneConfig, StudyConfig, load_config
from vlmalign.errors import ConfigError
from vlmalign.models import registry
from vlmalign.models.registry import ModelSpec
from vlmalign.study import run_study


@pytest.fixture
def tiny_registered(monkeypatch, tiny_vlm_factory):
    built = []

    def factory(load):
        model = tiny_vlm_factory()
        built.append(model)
        return model

    spec = ModelSpec(
        "tiny",
        "tiny random MAGMA",
        "tiny",
        "nothing",
        factory,
        capabilities=frozenset({"generate", "score", "train"}),
    )
    monkeypatch.setitem(registry.MODELS, "tiny", spec)
    return built


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    shots = [
        {"question": "What is it?", "answer": "A cat."},
        {"question": "Where?", "answer": "Home."},
    ]
    rows = [
        {
            "id": f"t{i}",
            "image": "a.png" if i % 2 else "b.png",
            "question": f"Should I help {i}?",
            "ideal_answer": "Yes.",
            "aligned_stance": "yes" if i % 2 else "no",
            "shots": shots,
            "split": "train" if i < 3 else "test",
        }
        for i in range(4)
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(small_dataset: Path, out: Path, **extra) -> StudyConfig:
    settings = {"finetune": None, "samples": 1, **extra}
    return StudyConfig(
        dataset=str(small_dataset),
        model="tiny",
        out=out,
        judges=("stance",),
        batch_size=2,
        sampling={"max_new_tokens": 4},
        **settings,
    )


def test_study_writes_table_and_results_then_resumes(
    tiny_registered, small_dataset, tmp_path
) -> None:
    out = tmp_path / "run"
    first = run_study(config(small_dataset, out, samples=2), progress=False)
    assert first.generated == (3 * 3 + 1) * 2
    results = json.loads((out / "results.json").read_text())
    cells = {(c["model"], c["split"], c["shots"], c["judge"]): c for c in results["cells"]}
    assert set(cells) == {("base", "train", s, "stance") for s in (0, 1, 2)} | {
        ("base", "test", 0, "stance")
    }
    assert cells[("base", "train", 1, "stance")]["n"] == 6
    for key in (
        "model_fingerprint",
        "dataset_sha256",
        "sampling",
        "seed",
        "vlmalign_version",
        "git_commit",
    ):
        assert key in results["provenance"]
    report = (out / "report.md").read_text()
    assert "| stance |" in report and "1-shot train" in report

    again = run_study(config(small_dataset, out, samples=2), progress=False)
    assert again.generated == 0 and again.reused == first.generated
    assert again.judged == {"stance": 0}
    with sqlite3.connect(out / "study.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == first.generated

    more = run_study(config(small_dataset, out, samples=3), progress=False)
    assert more.generated == 10  # only the third sample of each prompt is new


def test_interrupted_generation_keeps_finished_batches(
    tiny_registered, small_dataset, tmp_path, monkeypatch
) -> None:
    from vlmalign.models.magma import MagmaModel

    real_generate = MagmaModel.generate
    calls = {"n": 0}

    def flaky(self, requests, params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_generate(self, requests, params)

    monkeypatch.setattr(MagmaModel, "generate", flaky)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_study(config(small_dataset, out), progress=False)
    with sqlite3.connect(out / "study.sqlite") as conn:
        assert (
            conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 4
        )  # two full batches
    monkeypatch.setattr(MagmaModel, "generate", real_generate)
    resumed = run_study(config(small_dataset, out), progress=False)
    assert resumed.generated == 6 and resumed.reused == 4


def test_bad_dataset_writes_nothing(tiny_registered, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    out = tmp_path / "run"
    with pytest.raises(Exception, match="invalid JSON"):
        run_study(StudyConfig(dataset=str(bad), model="tiny", out=out), progress=False)
    assert not out.exists()


def test_config_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "samples: 3\nsampling:\n  temperature: 0.2\nconditions:\n  - {split: train, shots: 1}\n"
    )
    cfg = load_config(path, {"seed": 7, "samples": None})
    assert cfg.samples == 3 and cfg.seed == 7 and cfg.sampling.temperature == 0.2
    assert [c.shots for c in cfg.conditions] == [1]
    path.write_text("samplez: 3\n")
    with pytest.raises(ConfigError, match="samplez"):
        load_config(path)


def test_study_with_finetuning_reports_table_2(tiny_registered, small_dataset, tmp_path) -> None:
    out = tmp_path / "run"
    finetune = FinetuneConfig(epochs=2, batch_size=2, lr=5e-3)
    result = run_study(config(small_dataset, out, finetune=finetune), progress=False)
    cells = {(c.model, c.split, c.shots) for c in result.cells}
    assert {("finetuned", "train", 0), ("finetuned", "test", 0)} <= cells
    assert ("finetuned", "train", 1) not in cells
    results = json.loads((out / "results.json").read_text())
    assert any(c["model"] == "finetuned" for c in results["cells"])
    adapter = results["provenance"]["finetuned_adapter"]
    assert len(adapter["epoch_losses"]) == 2 and adapter["adapter_hash"]
    report = (out / "report.md").read_text()
    assert "Table 2" in report and "| stance | finetuned |" in report
    assert "Finetuning loss per epoch" in report
    with sqlite3.connect(out / "study.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM finetune_epochs").fetchone()[0] == 2
        variants = dict(conn.execute("SELECT variant, COUNT(*) FROM generations GROUP BY variant"))
    assert variants == {"base": 10, "finetuned": 4}
    again = run_study(config(small_dataset, out, finetune=finetune), progress=False)
    assert again.generated == 0  # adapter reused, every response resumed


def test_study_evaluates_a_given_adapter(tiny_registered, small_dataset, tmp_path) -> None:
    first = tmp_path / "first"
    finetune = FinetuneConfig(epochs=1, batch_size=2)
    run_study(config(small_dataset, first, finetune=finetune), progress=False)
    second = tmp_path / "second"
    result = run_study(config(small_dataset, second, adapter=first / "adapter"), progress=False)
    assert not (second / "adapter").exists()
    assert any(c.model == "finetuned" for c in result.cells)


def test_eval_judges_one_model_on_chosen_conditions(
    tiny_registered, small_dataset, tmp_path
) -> None:
    from vlmalign.study import run_eval

    first = tmp_path / "first"
    run_study(
        config(small_dataset, first, finetune=FinetuneConfig(epochs=1, batch_size=2)),
        progress=False,
    )
    conditions = [{"split": "test", "shots": 1}, {"split": "train", "shots": 0}]
    out = tmp_path / "eval"
    result = run_eval(
        config(small_dataset, out, conditions=conditions), first / "adapter", progress=False
    )
    assert {(c.model, c.split, c.shots) for c in result.cells} == {
        ("finetuned", "test", 1),
        ("finetuned", "train", 0),
    }
    results = json.loads((out / "results.json").read_text())
    assert (
        results["provenance"]["adapter_hash"]
        == results["provenance"]["finetuned_adapter"]["adapter_hash"]
    )
    base = run_eval(
        config(small_dataset, tmp_path / "base", conditions=conditions), None, progress=False
    )
    assert {c.model for c in base.cells} == {"base"}


def test_resume_with_a_changed_finetune_setting_trains_and_answers_anew(
    tiny_registered, small_dataset, tmp_path, monkeypatch
) -> None:
    """The learning rate is part of the finetuning run's identity: a study resumed with another
    one must neither resume the old checkpoint nor reuse the old adapter or its responses."""
    import vlmalign.finetune as finetune_module

    first = FinetuneConfig(epochs=2, batch_size=2, lr=5e-3)
    second = FinetuneConfig(epochs=2, batch_size=2, lr=2e-2)
    out = tmp_path / "run"

    def study(run: Path, settings: FinetuneConfig) -> StudyConfig:
        test_only = [{"split": "test", "shots": 0}]
        return config(small_dataset, run, finetune=settings, conditions=test_only)

    class Stop(Exception):
        pass

    def stop(epoch: int, loss: float) -> None:
        raise Stop

    train = finetune_module.finetune
    monkeypatch.setattr(
        finetune_module, "finetune", lambda *args, **kw: train(*args, **kw, on_epoch_end=stop)
    )
    with pytest.raises(Stop):  # the first setting stops after epoch 1, its checkpoint kept
        run_study(study(out, first), progress=False)
    assert (out / "adapter" / "checkpoints" / "epoch-1").is_dir()
    monkeypatch.setattr(finetune_module, "finetune", train)

    def adapter_of(run: Path) -> dict:
        return json.loads((run / "results.json").read_text())["provenance"]["finetuned_adapter"]

    resumed = run_study(study(out, second), progress=False)
    straight = tmp_path / "straight"
    run_study(study(straight, second), progress=False)
    # Trained from the start, as a run that never saw the first setting.
    expected = [e["loss"] for e in adapter_of(straight)["epoch_losses"]]
    assert [e["loss"] for e in adapter_of(out)["epoch_losses"]] == pytest.approx(expected)
    assert adapter_of(out)["adapter_hash"] == adapter_of(straight)["adapter_hash"]
    # The base model's response is reused; the finetuned model answers 3 train + 1 test anew.
    assert (resumed.generated, resumed.reused) == (4, 1)

    # Back to the first setting: the finished adapter of the second is not taken for it.
    again = run_study(study(out, first), progress=False)
    assert adapter_of(out)["adapter_hash"] != adapter_of(straight)["adapter_hash"]
    assert (again.generated, again.reused) == (4, 1)
    with sqlite3.connect(out / "study.sqlite") as conn:
        adapters = conn.execute(
            "SELECT COUNT(DISTINCT adapter_hash) FROM generations WHERE variant = 'finetuned'"
        ).fetchone()[0]
    assert adapters == 2


# --- what a study needs of its model -------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "adapter", "refused"),
    [
        ({"model": "mock:ideal"}, None, "cannot be finetuned: it lacks the 'train' capability"),
        ({"model": "mock:ideal", "finetune": None}, None, None),
        ({"model": "mock:ideal", "adapter": "a"}, None, "'train' and the 'serve_adapter'"),
        ({"model": "openai:m", "finetune": None}, Path("a"), "'train' and the 'serve_adapter'"),
        ({"model": "mini", "adapter": "a"}, None, None),  # loaded into a trainable model
        ({"model": "hf:x", "engine": "vllm", "finetune": None}, Path("a"), None),  # served
    ],
)
def test_a_study_needs_of_its_model_what_it_asks(settings, adapter, refused) -> None:
    from vlmalign.errors import ModelError
    from vlmalign.study_checks import require_capabilities

    checked = StudyConfig(**settings)
    if refused is None:
        require_capabilities(checked, adapter)
        return
    with pytest.raises(ModelError) as caught:
        require_capabilities(checked, adapter)
    message = str(caught.value)
    assert refused in message and "\n" not in message
