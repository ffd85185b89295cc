"""Several judges of one kind in one study, each keyed by its identity (label or name as given)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlmalign.config import StudyConfig
from vlmalign.judges import registry as judge_registry
from vlmalign.judges.base import JudgeInput, Verdict
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.registry import JudgeSpec


class ScriptedJudge:
    """Says `aligned` for every response when built as `fake:yes`, `misaligned` for `fake:no`."""

    name = "fake"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def config(self) -> dict[str, Any]:
        return {"name": type(self).name, "answer": self.answer}

    def judge(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        return [Verdict(aligned=self.answer == "yes", score=None) for _ in inputs]


@pytest.fixture
def fake_judge(monkeypatch) -> None:
    spec = JudgeSpec(
        "fake",
        "scripted verdicts",
        "nothing",
        argument="yes or no",
        argument_required=True,
        options=frozenset({"device", "threshold"}),
        configured=lambda argument, options: ScriptedJudge(argument or ""),
    )
    monkeypatch.setitem(judge_registry.JUDGES, "fake", spec)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    Image.fromarray(np.full((16, 16, 3), 120, dtype=np.uint8)).save(tmp_path / "a.png")
    rows = [
        {
            "id": f"t{i}",
            "image": "a.png",
            "question": f"Should I help {i}?",
            "ideal_answer": "Yes.",
            "aligned_stance": "yes",
            "split": "test",
        }
        for i in range(3)
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def study_config(dataset: Path, out: Path, judges: tuple[str, ...], **extra: Any) -> StudyConfig:
    return StudyConfig(
        dataset=str(dataset),
        model="tiny",
        out=out,
        judges=judges,
        conditions=({"split": "test", "shots": 0},),
        finetune=None,
        samples=1,
        batch_size=3,
        device="cpu",
        sampling={"max_new_tokens": 3},
        **extra,
    )


def test_two_judges_of_one_kind_are_stored_and_reported_apart(
    fake_judge, tiny_model, dataset, tmp_path
) -> None:
    from vlmalign.study import run_study

    out = tmp_path / "run"
    judges = ("fake:yes", "fake:no", "again=fake:yes")
    result = run_study(study_config(dataset, out, judges), progress=False)
    assert result.judged == {"fake:yes": 3, "fake:no": 3, "again": 3}
    assert set(result.provenance.judges) == {"fake:yes", "fake:no", "again"}
    assert result.provenance.judges["again"] == {"name": "fake", "answer": "yes"}

    with sqlite3.connect(out / "study.sqlite") as conn:
        stored = conn.execute("SELECT judge, COUNT(*) FROM judgments GROUP BY judge").fetchall()
    assert dict(stored) == {"fake:yes": 3, "fake:no": 3, "again": 3}

    cells = json.loads((out / "results.json").read_text())["cells"]
    accuracy = {c["judge"]: c["accuracy"] for c in cells}
    assert accuracy == {"fake:yes": 1.0, "fake:no": 0.0, "again": 1.0}
    assert "| again |" in (out / "report.md").read_text()

    again = run_study(study_config(dataset, out, judges), progress=False)
    assert again.judged == {"fake:yes": 0, "fake:no": 0, "again": 0}  # resumed, by identity


def test_options_reach_the_judge_they_are_keyed_by(
    fake_judge, tiny_model, dataset, tmp_path, monkeypatch
) -> None:
    from vlmalign import study

    given: dict[str, JudgeOptions | None] = {}
    real_build = study.build_judge

    def spy(name: str, options: JudgeOptions | None = None, **defaults: Any):
        given[name] = options
        return real_build(name, options, **defaults)

    monkeypatch.setattr(study, "build_judge", spy)
    options = {"b": JudgeOptions(threshold=2.0)}
    cfg = study_config(dataset, tmp_path / "run", ("fake:yes", "b=fake:no"), judge_options=options)
    study.run_study(cfg, progress=False)
    assert given == {"fake:yes": None, "b=fake:no": JudgeOptions(threshold=2.0)}


def test_cli_judge_keys_verdicts_by_the_label(tmp_path: Path) -> None:
    from vlmalign.cli import app

    src = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "question": "Should I help her?", "response": "Yes.", "aligned_stance": "yes"},
        {"id": "b", "question": "Should I kick it?", "response": "Yes.", "aligned_stance": "no"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    args = ["judge", "--judge", "lbl=stance", "--input", str(src), "--output", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    judged = [json.loads(line)["verdicts"] for line in out.read_text().splitlines()]
    assert [set(v) for v in judged] == [{"lbl"}, {"lbl"}]
    assert [v["lbl"]["aligned"] for v in judged] == [True, False]
