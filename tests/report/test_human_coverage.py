"""How many responses of each condition humans labelled, and the intervals of every
judge-vs-human figure, in report.md, report.html, results.json and `vlmalign report`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from tests.report.conftest import build_run
from vlmalign import cli
from vlmalign.report.build import build_report
from vlmalign.store import LabelRow, RunStore

STAMP = "2026-01-01T00:00:00+00:00"


def few_labels_run(run_dir: Path) -> None:
    """Every condition with one sample per prompt (30 train items, 10 test items), and labels on
    three base 0-shot train responses and one finetuned 0-shot test response only."""
    rows = build_run(run_dir, samples=1, annotators=())
    base = [r for r in rows if (r.variant, r.split, r.shots) == ("base", "train", 0)][:3]
    finetuned = [r for r in rows if (r.variant, r.split, r.shots) == ("finetuned", "test", 0)][:1]
    labels = [LabelRow(r.key, "ana", "aligned", "", STAMP) for r in base + finetuned]
    labels.append(LabelRow(base[0].key, "ben", "misaligned", "", STAMP))  # two on one response
    with RunStore(run_dir) as store:
        store.add_labels(labels)


EXPECTED = {
    ("base", "train", 0): (3, 30),
    ("base", "train", 1): (0, 30),
    ("base", "train", 2): (0, 30),
    ("base", "test", 0): (0, 10),
    ("finetuned", "train", 0): (0, 30),
    ("finetuned", "test", 0): (1, 10),
}


def test_coverage_per_condition_in_every_format(tmp_path: Path) -> None:
    run_dir = tmp_path / "few"
    few_labels_run(run_dir)
    build_report([run_dir], run_dir)

    results = json.loads((run_dir / "results.json").read_text())
    coverage = {
        (c["model"], c["split"], c["shots"]): (c["labelled"], c["responses"])
        for c in results["human_coverage"]
    }
    assert coverage == EXPECTED
    assert {c["run"] for c in results["human_coverage"]} == {"few"}

    report = (run_dir / "report.md").read_text()
    assert "- base 0-shot train: 3 of 30 responses labelled" in report
    assert "- finetuned 0-shot test: 1 of 10 responses labelled" in report
    assert "- base 2-shot train: 0 of 30 responses labelled" in report

    page = (run_dir / "report.html").read_text()
    human = page[page.index('<section id="human">') :]
    assert "<li>base 0-shot train: 3 of 30 responses labelled</li>" in human
    assert "<li>finetuned 0-shot test: 1 of 10 responses labelled</li>" in human


def test_every_judge_vs_human_figure_has_its_interval(synthetic_run: Path) -> None:
    build_report([synthetic_run], synthetic_run)
    results = json.loads((synthetic_run / "results.json").read_text())
    for judge, agreement in results["human"]["run-a"]["judge_vs_human"].items():
        assert agreement["n"] > 20, judge
        for figure, low, high in (
            ("accuracy", "accuracy_ci_low", "accuracy_ci_high"),
            ("kappa", "kappa_ci_low", "kappa_ci_high"),
            ("alignment_bias", "bias_ci_low", "bias_ci_high"),
        ):
            assert agreement[low] <= agreement[figure] <= agreement[high], (judge, figure)
            if judge == "ethics":  # the synthetic stance judge agrees with humans perfectly
                assert agreement[low] < agreement[high], figure
    report = (synthetic_run / "report.md").read_text()
    human = report[report.index("## Human evaluation") :]
    row = next(line for line in human.splitlines() if line.startswith("| ethics |"))
    # accuracy "p% [lo%–hi%]", kappa "k [lo, hi]", aligned rate "+x points [+lo, +hi]"
    assert re.search(r"\d+% \[\d+%–\d+%\]", row), row
    assert re.search(r"-?\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\]", row), row
    assert re.search(r"[+-]\d+\.\d points \[[+-]\d+\.\d, [+-]\d+\.\d\]", row), row
    page = (synthetic_run / "report.html").read_text()
    assert "kappa [95% CI]" in page and 'class="bias">+' in page


def test_report_command_prints_coverage_and_intervals(tmp_path: Path) -> None:
    run_dir = tmp_path / "few"
    few_labels_run(run_dir)
    result = CliRunner().invoke(cli.app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "humans labelled 4 of 140 responses (base 0-shot train 3 of 30," in result.output
    assert "finetuned 0-shot test 1 of 10)" in result.output
    assert "stance vs humans (95% intervals): agrees" in result.output
