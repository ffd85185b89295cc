"""Several runs in one report: a leaderboard and paired tests between runs on shared items; and
tables that follow each study's design. Runs come from scripted models whose accuracies are
known: `mock:ideal` is right on every item, `mock:misaligned` on none."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmalign.cli import app
from vlmalign.data.dataset import load_dataset

BUILTIN = "builtin:moral-vqa-40"
MISSING = "–"


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two evals of the built-in test split (10 items, 5 samples), and one of 6 of its items
    from another file (another dataset that shares 6 item ids)."""
    root = tmp_path_factory.mktemp("across")
    for model in ("ideal", "misaligned"):
        run("eval", "--model", f"mock:{model}", "--judge", "stance", "--out", str(root / model))
    test_items = [i for i in load_dataset(BUILTIN).items if i.split == "test"][:6]
    subset = root / "subset.jsonl"
    subset.write_text(
        "".join(json.dumps(i.model_dump(mode="json", exclude_none=True)) + "\n" for i in test_items)
    )
    run(
        "eval",
        "--model",
        "mock:misaligned",
        "--dataset",
        str(subset),
        "--judge",
        "stance",
        "--out",
        str(root / "subset"),
    )
    return root


def comparisons(folder: Path) -> list[dict[str, str]]:
    with (folder / "comparisons.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_two_runs_are_compared_on_their_shared_condition(runs: Path) -> None:
    out = runs / "compare"
    printed = run("report", str(runs / "ideal"), str(runs / "misaligned"), "--out", str(out))
    between = [row for row in comparisons(out) if row["run_b"]]
    assert [(r["judge"], r["a"], r["run"], r["run_b"]) for r in between] == [
        ("stance", "base test 0", "ideal", "misaligned")
    ]
    row = between[0]
    assert float(row["accuracy_a"]) == 1.0 and float(row["accuracy_b"]) == 0.0
    assert row["significant"] == "True" and float(row["p_holm"]) < 0.05
    assert row["n_items"] == "10"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Leaderboard" in report and "## Between runs" in report
    assert "| stance | ideal | mock:ideal | base |" in report
    assert "ask the same dataset (10 items)" in report
    assert "between runs: stance: misaligned vs ideal, base 0-shot test" in printed
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="leaderboard"' in html and 'id="between"' in html
    shared = json.loads((out / "results.json").read_text())["shared_items"]
    assert shared == [
        {
            "run_a": "ideal",
            "run_b": "misaligned",
            "same_dataset": True,
            "shared": 10,
            "items_a": 10,
            "items_b": 10,
        }
    ]


def test_runs_over_different_datasets_are_compared_on_shared_item_ids(runs: Path) -> None:
    out = runs / "compare-subset"
    run("report", str(runs / "ideal"), str(runs / "subset"), "--out", str(out))
    between = [row for row in comparisons(out) if row["run_b"]]
    assert [r["n_items"] for r in between] == ["6"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "compared on the 6 item ids they share (6 and 10 items)" in report


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


def test_a_test_only_study_has_no_row_or_column_of_dashes(runs: Path) -> None:
    report = (runs / "ideal" / "report.md").read_text(encoding="utf-8")
    assert "Table 1" not in report and "## Results by condition" in report
    for table in markdown_tables(report):
        body = table[2:]  # header, then the |---| line
        for column in range(len(table[0])):
            assert any(row[column] != MISSING for row in body), table[0][column]
        for row in body:
            assert any(cell != MISSING for cell in row[1:]), row


def test_the_paper_design_keeps_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    run(
        "study",
        "--model",
        "mock:ideal",
        "--judge",
        "stance",
        "--no-finetune",
        "--samples",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Table 1: alignment of the base model" in report
    assert "Table 2" not in report  # no finetuned model was asked
    table1 = markdown_tables(report)[0]
    assert table1[0] == ["judge", "0-shot train", "1-shot train", "2-shot train"]


def test_results_csv_names_the_model_and_its_variant(runs: Path) -> None:
    with (runs / "ideal" / "results.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["model"], r["variant"], r["run"]) for r in rows} == {("mock:ideal", "base", "ideal")}


def test_answer_profiles_come_from_the_stance_judge_under_any_label(tmp_path: Path) -> None:
    out = tmp_path / "labelled"
    run("eval", "--model", "mock:yes", "--judge", "reader=stance", "--out", str(out), "--quiet")
    profiles = json.loads((out / "results.json").read_text())["profiles"]
    assert [(p["yes_rate"], p["unclear_rate"]) for p in profiles] == [(1.0, 0.0)]  # all "Yes."
    assert "## Answers by condition" in (out / "report.md").read_text(encoding="utf-8")
