"""`vlmalign store check`: a clean store passes; each kind of damage, injected by hand with
plain SQL, is reported on its own line (exit 1); an unusable file is exit 2."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.report.conftest import build_run
from tests.test_store import cli
from vlmalign.store import STORE_FILE, RunStore
from vlmalign.store.check import check_store

T = "2026-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("built") / "run"
    build_run(run_dir, samples=1, annotators=("ana",))
    return run_dir


@pytest.fixture
def run(built_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(built_run, target)
    return target


def raw(run: Path, *statements: str) -> None:
    """Change the store behind vlmalign's back (foreign keys off, as a buggy writer might)."""
    conn = sqlite3.connect(run / STORE_FILE)
    with conn:
        for sql in statements:
            conn.execute(sql)
    conn.close()


def test_a_clean_store_passes(run: Path) -> None:
    assert check_store(run) == []
    code, _ = cli("store", "check", run)
    assert code == 0


def test_a_superseded_unfinished_run_is_history(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunStore(run) as store:
        store.start_run({"judges": {}})  # killed; the run below then finished
    build_run(run, samples=1, annotators=("ana",))
    assert check_store(run) == []


def one_labelled_key(run: Path) -> str:
    with RunStore(run, read_only=True) as store:
        return store.labels()[0].generation_key


def test_each_kind_of_damage_is_named(run: Path, capsys) -> None:
    key = one_labelled_key(run)  # judged, labelled and in the run
    raw(
        run,
        f"DELETE FROM generations WHERE key = '{key}'",
        "INSERT INTO labels (generation_key, annotator, label, note, source, created_at) "
        "SELECT generation_key, annotator, label, note, source, created_at FROM labels "
        f"WHERE generation_key != '{key}' LIMIT 1",
        "INSERT INTO run_generations SELECT 99, generation_key FROM run_generations "
        f"WHERE generation_key != '{key}' LIMIT 1",
        "INSERT INTO reference_judgments (dataset_sha256, item_id, side, judge, "
        "judge_config_sha256, aligned, score, detail, created_at) SELECT dataset_sha256, "
        f"'ghost', 'ideal', 'stance', 'c', 1, NULL, '{{}}', '{T}' FROM items LIMIT 1",
        "DELETE FROM datasets",
        f"INSERT INTO study_runs (started_at, provenance) VALUES ('{T}', '{{}}')",
    )
    problems = [str(p) for p in check_store(run)]
    assert problems == [
        "duplicate: 1 keys of labels (generation_key, annotator, label, note, source, "
        f"created_at) have several rows: {problems[0].split('rows: ')[1]}",
        f"orphan: 2 judgments of missing generations: {key}",  # stance and ethics
        f"orphan: 1 labels of missing generations: {key}",
        f"orphan: 1 run_generations naming missing generations: {key}",
        "orphan: 1 run_generations naming missing study runs: 99",
        "orphan: 1 reference_judgments of missing items: ghost",
        f"orphan: 1 items of datasets with no datasets row: {problems[6].rsplit(' ', 1)[1]}",
        f"unfinished: study run 2 (started {T}) did not finish (killed, failed or still running):"
        " rerun the study to finish it",
    ]
    assert problems[0].endswith("(2x)")
    with sqlite3.connect(run / STORE_FILE) as conn:
        sha = conn.execute("SELECT DISTINCT dataset_sha256 FROM items").fetchone()[0]
    conn.close()
    assert problems[6].endswith(sha)
    capsys.readouterr()
    code, _ = cli("store", "check", run)
    printed = capsys.readouterr().out.splitlines()
    assert code == 1
    assert printed[0] == f"{run / STORE_FILE}: 8 problems"
    assert [line.strip() for line in printed[1:]] == problems


def test_many_orphans_are_counted_not_all_listed(run: Path) -> None:
    raw(run, "DELETE FROM generations")
    problems = [str(p) for p in check_store(run)]
    with sqlite3.connect(run / STORE_FILE) as conn:
        judged = conn.execute("SELECT COUNT(DISTINCT generation_key) FROM judgments").fetchone()
        rows = conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    conn.close()
    line = next(p for p in problems if "judgments of missing generations" in p)
    assert line.startswith(f"orphan: {rows} judgments of missing generations: ")
    assert line.endswith(f" and {judged[0] - 3} more")  # each key named once


def test_a_damaged_index_fails_the_integrity_check(run: Path) -> None:
    """Point the labels index at another index's pages: SQLite's own check must object."""
    conn = sqlite3.connect(run / STORE_FILE)
    other = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_judgments_1'"
    ).fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    with conn:
        conn.execute(
            "UPDATE sqlite_master SET rootpage = ? WHERE name = 'labels_by_generation'", (other,)
        )
    conn.close()
    problems = check_store(run)
    assert problems and {p.kind for p in problems} == {"integrity"}
    assert cli("store", "check", run)[0] == 1


def test_not_a_store_is_exit_2(tmp_path: Path) -> None:
    code, stderr = cli("store", "check", tmp_path / "nothing")
    assert code == 2
    assert stderr.strip() == (
        f"error: {tmp_path / 'nothing' / STORE_FILE} does not exist; run `vlmalign study` first"
    )
