"""`vlmalign report`: files rebuilt from the store, intervals in every cell, tests, humans."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlmalign.report.analysis import analyse, comparison_pairs
from vlmalign.report.build import build_report
from vlmalign.report.run_data import load_run
from vlmalign.report.texts import comparison_sentence
from vlmalign.stats import accuracy_estimate
from vlmalign.stats.calibrated import PAIRED_METHOD

FILES = ("report.md", "report.html", "results.json", "results.csv", "comparisons.csv")


def test_every_cell_has_its_interval_and_n(synthetic_run: Path) -> None:
    build_report([synthetic_run], synthetic_run)
    results = json.loads((synthetic_run / "results.json").read_text())
    assert {
        "cells",
        "comparisons",
        "breakdowns",
        "profiles",
        "human",
        "paper",
        "provenance",
    } <= set(results)
    judges = {c["judge"] for c in results["cells"]}
    assert judges == {"stance", "ethics", "human"}
    for cell in results["cells"]:
        assert cell["n"] > 0
        assert 0 <= cell["ci_low"] <= cell["accuracy"] <= cell["ci_high"] <= 1
        if cell["judge"] != "human":  # humans labelled one response in three
            assert cell["ci_method"] == "cluster-bootstrap"  # two samples per prompt
    with (synthetic_run / "results.csv").open() as handle:
        assert all(row["ci_low"] and row["ci_high"] for row in csv.DictReader(handle))


def test_cells_match_the_statistics_computed_directly(synthetic_run: Path) -> None:
    run = load_run(synthetic_run)
    analysis = analyse(run)
    cell = next(
        c
        for c in analysis.cells
        if (c.judge, c.model, c.split, c.shots) == ("stance", "base", "train", 1)
    )
    by_item: dict[str, list[bool | None]] = {}
    for g in run.generations:
        if (g.variant, g.split, g.shots) == ("base", "train", 1):
            by_item.setdefault(g.item_id, []).append(run.verdicts["stance"][g.key].aligned)
    expected = accuracy_estimate(by_item)
    assert (cell.accuracy, cell.n, cell.ci_low, cell.ci_high) == (
        expected.accuracy,
        expected.n,
        expected.ci_low,
        expected.ci_high,
    )
    assert cell.paper_magma_accuracy == 0.67  # the paper's hand-evaluated 1-shot train


def test_paired_comparisons_cover_the_papers_questions(synthetic_run: Path) -> None:
    analysis = analyse(load_run(synthetic_run))
    pairs = {(c.a, c.b) for c in analysis.comparisons if c.judge == "stance"}
    assert pairs == set(comparison_pairs([c.condition for c in analysis.cells]))
    assert len(pairs) == 5
    finetuned = next(
        c for c in analysis.comparisons if c.judge == "stance" and c.b == ("finetuned", "train", 0)
    )
    # The synthetic finetuned model is aligned 95% of the time against 30%: clearly real.
    assert finetuned.significant and finetuned.difference > 0.4
    # Both conditions have human labels: the comparison is of the rates people would give.
    assert finetuned.calibrated and finetuned.method == PAIRED_METHOD
    build_report([synthetic_run], synthetic_run)
    report = (synthetic_run / "report.md").read_text()
    assert "Significant at 0.05" in report and comparison_sentence(finetuned) in report


def test_one_sample_per_prompt_uses_wilson_and_mcnemar(second_run: Path) -> None:
    analysis = analyse(load_run(second_run))
    assert {c.ci_method for c in analysis.cells if c.judge != "human"} == {"wilson"}
    assert {c.method for c in analysis.comparisons if c.judge == "stance"} == {"mcnemar-exact"}


def test_human_agreement_in_the_report(synthetic_run: Path) -> None:
    build_report([synthetic_run], synthetic_run)
    report = (synthetic_run / "report.md").read_text()
    assert "## Human evaluation" in report
    assert "Krippendorff's alpha (nominal): 0." in report
    assert "ethics" in report and "over-estimates alignment by" in report
    results = json.loads((synthetic_run / "results.json").read_text())
    human = results["human"]["run-a"]
    assert set(human["judge_vs_human"]) == {"stance", "ethics"}
    assert human["annotators"]["annotators"] == ["ana", "ben", "cy"]


def test_breakdowns_and_profiles(synthetic_run: Path) -> None:
    analysis = analyse(load_run(synthetic_run))
    groups = {b.group for b in analysis.breakdowns}
    assert {"polarity: affirmative", "polarity: negative", "tag: trap"} <= groups
    assert {"aligned stance: yes", "aligned stance: no"} <= groups
    profile = analysis.profiles[0]
    assert profile.yes_rate is not None and 0 <= profile.yes_rate <= 1
    assert profile.consistency is not None


def test_several_runs_side_by_side(synthetic_run: Path, second_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    build_report([synthetic_run, second_run], out)
    assert all((out / name).is_file() for name in FILES)
    report = (out / "report.md").read_text()
    assert "## Side by side" in report and "| run-a | run-b |" in report
    results = json.loads((out / "results.json").read_text())
    assert {c["run"] for c in results["cells"]} == {"run-a", "run-b"}
    assert set(results["provenance"]) == {"run-a", "run-b"}


def vlmalign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", *args], capture_output=True, text=True, timeout=300
    )


def test_report_command(synthetic_run: Path, tmp_path: Path) -> None:
    done = vlmalign("report", str(synthetic_run))
    assert done.returncode == 0, done.stderr
    assert all((synthetic_run / name).is_file() for name in FILES)
    assert "ethics vs humans" in done.stdout and "over-estimates alignment" in done.stdout
    missing = vlmalign("report", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")


@pytest.mark.parametrize("name", FILES)
def test_nothing_half_written_on_error(synthetic_run: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(Exception):  # noqa: B017 (any failure: the second run is missing)
        build_report([synthetic_run, tmp_path / "missing"], out)
    assert not (out / name).exists()


def test_a_report_killed_mid_write_leaves_nothing_after_the_next(synthetic_run: Path) -> None:
    left = synthetic_run / ".report.md.k1ll3d.tmp"  # as a writer killed before its rename
    left.write_text("half a report")
    build_report([synthetic_run], synthetic_run)
    assert not left.exists()
    assert not [p for p in synthetic_run.iterdir() if p.name.endswith(".tmp")]
