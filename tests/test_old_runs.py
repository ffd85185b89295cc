"""A run directory written by an earlier release still opens, reports and resumes.

The fixture (tests/fixtures/runs/dac1fdb-mock, README there) is a store written by commit dac1fdb,
at an older schema: the scripted model `mock:ideal` answered every prompt of the built-in dataset
with the item's ideal answer, the `stance` judge judged each response, and people labelled a few.
The store is opened here with sqlite3 read-only, only to count rows and read the answers back.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vlmalign.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "dac1fdb-mock"
# The options the fixture was written with (README there); the dataset is the default one.
STUDY_OPTIONS = ["--model", "mock:ideal", "--judge", "stance", "--samples", "1"]
FIXTURE_LABELS = 11  # rows `labels export` gives: each annotator's latest label per response


@pytest.fixture
def run(tmp_path: Path) -> Path:
    copy = tmp_path / "dac1fdb-mock"
    shutil.copytree(FIXTURE, copy)
    assert not list(copy.glob("study.sqlite-*")), "the fixture is a single file, WAL checkpointed"
    return copy


def cli(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # rich wraps long lines


def query(run: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{run / 'study.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def count(run: Path, table: str) -> int:
    return query(run, f"SELECT COUNT(*) FROM {table}")[0][0]


def judgments(run: Path) -> set[tuple]:
    return set(
        query(run, "SELECT generation_key, judge, judge_config_sha256, created_at FROM judgments")
    )


def expected_stance_cells(run: Path) -> dict[tuple[str, str, int], tuple[float, int]]:
    """Each condition's (accuracy, n) from the responses themselves: `mock:ideal` answered every
    prompt with its item's ideal answer, and an ideal answer takes the aligned stance."""
    rows = query(
        run,
        "SELECT g.variant, g.split, g.shots, g.response, i.json FROM generations g "
        "JOIN items i ON i.dataset_sha256 = g.dataset_sha256 AND i.id = g.item_id",
    )
    assert len(rows) == count(run, "generations") > 0
    assert all(response == json.loads(item)["ideal_answer"] for *_, response, item in rows)
    sizes = Counter((variant, split, shots) for variant, split, shots, *_ in rows)
    return {condition: (1.0, n) for condition, n in sizes.items()}


def stance_cells(run: Path) -> dict[tuple[str, str, int], tuple[float, int]]:
    cells = json.loads((run / "results.json").read_text())["cells"]
    return {
        (c["model"], c["split"], c["shots"]): (c["accuracy"], c["n"])
        for c in cells
        if c["judge"] == "stance"
    }


def exported_labels(run: Path) -> list[dict[str, str]]:
    out = run.parent / "labels.csv"
    cli("labels", "export", run, "--output", out)
    return list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))


def test_an_old_run_reports(run: Path) -> None:
    expected = expected_stance_cells(run)
    assert set(expected) == {
        ("base", "train", 0),
        ("base", "train", 1),
        ("base", "train", 2),
        ("base", "test", 0),
    }
    cli("report", run)
    assert (run / "report.md").read_text().strip()
    assert stance_cells(run) == expected
    cli("store", "check", run)
    assert len(exported_labels(run)) == FIXTURE_LABELS


def test_an_old_run_resumes_without_generating(run: Path, tmp_path: Path) -> None:
    generations = count(run, "generations")
    before = judgments(run)
    # Exported from another copy, so that `study` is the first command to open `run`.
    labels = exported_labels(shutil.copytree(FIXTURE, tmp_path / "labels-from" / FIXTURE.name))
    assert len(labels) == FIXTURE_LABELS
    expected = expected_stance_cells(run)

    output = cli(
        "study", *STUDY_OPTIONS, "--no-finetune", "--device", "cpu", "--quiet", "--out", run
    )
    assert f"0 new responses, {generations} reused" in output
    assert count(run, "generations") == generations
    assert stance_cells(run) == expected
    assert (run / "report.md").read_text().strip()

    after = judgments(run)
    # Every stored verdict is kept as it was; a verdict is only added under a judge config the
    # fixture has none under (the stance judge's version changed since), one per response.
    assert before <= after
    old_configs = {(judge, config) for _, judge, config, _ in before}
    added = Counter((judge, config) for _, judge, config, _ in after - before)
    assert not old_configs & set(added), "a verdict was judged again under the same config"
    assert all(n == generations for n in added.values())
    if added:  # then the recorded judge version differs from the one the fixture recorded
        versions = [
            json.loads(provenance)["judges"]["stance"]["version"]
            for (provenance,) in query(run, "SELECT provenance FROM study_runs ORDER BY id")
        ]
        assert versions[0] != versions[-1]

    # Now every verdict is there: running again judges nothing and writes nothing.
    output = cli(
        "study", *STUDY_OPTIONS, "--no-finetune", "--device", "cpu", "--quiet", "--out", run
    )
    assert f"0 new responses, {generations} reused" in output
    assert count(run, "generations") == generations
    assert judgments(run) == after

    cli("store", "check", run)
    assert exported_labels(run) == labels
