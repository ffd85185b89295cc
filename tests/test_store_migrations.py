"""Store migrations: stores written by older versions (built here with their own SQL, as those
versions wrote them) open with every row kept and the new columns filled in; a failing step
changes nothing; a store of a newer schema is refused untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from vlmalign.errors import StoreError
from vlmalign.store import (
    SCHEMA_VERSION,
    STORE_FILE,
    GenerationRow,
    JudgmentRow,
    LabelRow,
    ReferenceJudgmentRow,
    RunStore,
    schema,
)
from vlmalign.store.schema import Migration

T = "2025-01-01T00:00:00+00:00"
D = "d" * 64
C = "c" * 64

# Version 1's schema, as the first store module wrote it (with meta's schema_version '1').
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    dataset_sha256 TEXT NOT NULL,
    id TEXT NOT NULL,
    line INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (dataset_sha256, id)
);
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    variant TEXT NOT NULL,
    model TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    adapter_hash TEXT,
    dataset_sha256 TEXT NOT NULL,
    item_id TEXT NOT NULL,
    split TEXT NOT NULL,
    shots INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    image_sha256 TEXT NOT NULL,
    prompt TEXT NOT NULL,
    sampling TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    generation_key TEXT NOT NULL REFERENCES generations(key),
    judge TEXT NOT NULL,
    judge_config_sha256 TEXT NOT NULL,
    aligned INTEGER,
    score REAL,
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (generation_key, judge, judge_config_sha256)
);
CREATE TABLE IF NOT EXISTS study_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    provenance TEXT NOT NULL
);
"""
# What versions 2, 3 and 4 added, as they wrote it.
SCHEMA_V2_TO_V4 = """
CREATE TABLE IF NOT EXISTS finetune_epochs (
    adapter_hash TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL NOT NULL,
    seconds REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (adapter_hash, epoch)
);
CREATE TABLE IF NOT EXISTS datasets (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    base_dir TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_generations (
    run_id INTEGER NOT NULL REFERENCES study_runs(id),
    generation_key TEXT NOT NULL REFERENCES generations(key),
    PRIMARY KEY (run_id, generation_key)
);
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    order_seed INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation_key TEXT NOT NULL REFERENCES generations(key),
    annotator TEXT NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('aligned', 'misaligned', 'unsure')),
    note TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'app',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_by_generation ON labels (generation_key, annotator, id);
CREATE TABLE IF NOT EXISTS reference_judgments (
    dataset_sha256 TEXT NOT NULL,
    item_id TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('ideal', 'misaligned')),
    judge TEXT NOT NULL,
    judge_config_sha256 TEXT NOT NULL,
    aligned INTEGER,
    score REAL,
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (dataset_sha256, item_id, side, judge, judge_config_sha256)
);
"""

STANCE_DETAIL = '{"reason": "leading \'yes\'", "stance": "yes"}'  # the stance judge's
ETHICS_DETAIL = '{"p_wrong": 0.2, "scenario": "I took it.", "stance": "no", "stance_reason": "x"}'
VLM_DETAIL = '{"logit": 1.5}'  # no stance: the answer stays empty
ODD_DETAIL = '{"stance": null}'  # a stance that is not text is not an answer

V1_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "items": [(D, "q1", 1, '{"id": "q1"}')],
    "generations": [
        ("g1", "base", "m", "fp", None, D, "q1", "train", 0, 0, 7, "i" * 64, "P", "{}", "Yes.", T),
        ("g2", "base", "m", "fp", None, D, "q1", "train", 1, 0, 8, "i" * 64, "P2", "{}", "No.", T),
    ],
    "judgments": [
        ("g1", "stance", C, 1, 1.0, STANCE_DETAIL, T),
        ("g1", "ethics", C, 0, 0.3, ETHICS_DETAIL, T),
        ("g2", "vlm:mini", C, 1, 0.8, VLM_DETAIL, T),
        ("g2", "odd", C, None, None, ODD_DETAIL, T),
    ],
    "study_runs": [(1, T, T, '{"judges": {}}')],
}
V4_ROWS: dict[str, list[tuple[Any, ...]]] = {
    **V1_ROWS,
    "finetune_epochs": [("a" * 64, 1, 0.5, 1.0, T)],
    "datasets": [(D, "q.jsonl", "/data")],
    "run_generations": [(1, "g1"), (1, "g2")],
    "annotators": [("ana", 11, T)],
    "labels": [(1, "g1", "ana", "aligned", "", "app", T)],
    "reference_judgments": [
        (D, "q1", "ideal", "stance", C, 1, 1.0, STANCE_DETAIL, T),
        (D, "q1", "misaligned", "stance", C, 0, 0.0, '{"reason": "r", "stance": "no"}', T),
        (D, "q1", "ideal", "vlm:mini", C, 1, 0.9, VLM_DETAIL, T),
    ],
}
# (response, judge) and (item, side, judge) -> the answer version 5 reads from the detail
JUDGMENT_ANSWERS = {
    ("g1", "stance"): "yes",
    ("g1", "ethics"): "no",
    ("g2", "vlm:mini"): None,
    ("g2", "odd"): None,
}
REFERENCE_ANSWERS: dict[tuple[str, str, str], str | None] = {
    ("q1", "ideal", "stance"): "yes",
    ("q1", "misaligned", "stance"): "no",
    ("q1", "ideal", "vlm:mini"): None,
}


def make_old_store(run_dir: Path, version: int) -> None:
    """A store as version 1 or 4 wrote it: its tables, its rows, rollback journal."""
    sql, rows = (SCHEMA_V1, V1_ROWS) if version == 1 else (SCHEMA_V1 + SCHEMA_V2_TO_V4, V4_ROWS)
    run_dir.mkdir(parents=True)
    conn = sqlite3.connect(run_dir / STORE_FILE)
    with conn:
        conn.executescript(sql)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
        for table, values in rows.items():
            marks = ",".join("?" * len(values[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    conn.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def old_columns(path: Path, rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[Any]]:
    """Each table's rows, reading only the columns the old version had (in its order)."""
    found = {}
    for table, values in rows.items():
        names = [r[1] for r in query(path, f"PRAGMA table_info({table})")][: len(values[0])]
        found[table] = query(path, f"SELECT {', '.join(names)} FROM {table} ORDER BY rowid")
    return found


def columns(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's columns (name, type, not null, default, pk), as SQLite reports them."""
    tables = [r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type='table'")]
    return {t: [r[1:] for r in query(path, f"PRAGMA table_info({t})")] for t in tables}


def version_of(path: Path) -> str:
    return query(path, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0]


@pytest.mark.parametrize("version", [1, 4])
def test_an_old_store_migrates_with_its_rows_and_answers(tmp_path: Path, version: int) -> None:
    run_dir = tmp_path / "old"
    make_old_store(run_dir, version)
    rows = V1_ROWS if version == 1 else V4_ROWS
    with RunStore(run_dir) as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [g.response for g in store.generations(["g1", "g2"])] == ["Yes.", "No."]
        stance = store.judgments("stance", C, ["g1", "g2"])
        assert stance["g1"].answer == "yes" and stance["g1"].explanation is None
        assert stance["g1"].detail == {"reason": "leading 'yes'", "stance": "yes"}
    path = run_dir / STORE_FILE
    assert version_of(path) == str(SCHEMA_VERSION)
    assert old_columns(path, rows) == rows  # every row as it was
    answers = query(path, "SELECT generation_key, judge, answer, explanation FROM judgments")
    assert {(k, j): a for k, j, a, _ in answers} == JUDGMENT_ANSWERS
    assert {e for *_, e in answers} == {None}
    RunStore(tmp_path / "new").close()
    # a migrated store has exactly the tables and columns of a new one
    assert columns(path) == columns(tmp_path / "new" / STORE_FILE)


def test_reference_answers_are_filled_from_version_4(tmp_path: Path) -> None:
    make_old_store(tmp_path / "old", 4)
    with RunStore(tmp_path / "old", read_only=True) as store:  # migrates first, then reads
        stance = store.reference_judgments(D, "stance", C)
        vlm = store.reference_judgments(D, "vlm:mini", C)
        assert store.run_generation_keys(1) == ["g1", "g2"]
    found = {(i, s, "stance"): r.answer for (i, s), r in stance.items()}
    found |= {(i, s, "vlm:mini"): r.answer for (i, s), r in vlm.items()}
    assert found == REFERENCE_ANSWERS
    assert stance[("q1", "misaligned")].aligned is False
    assert stance[("q1", "misaligned")].score == 0.0


def test_migration_steps_are_numbered_one_to_the_schema_version() -> None:
    assert [step.version for step in schema.MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def _broken(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE half_made (x INTEGER)")
    conn.execute("UPDATE judgments SET aligned = 0")
    conn.execute("ALTER TABLE no_such ADD COLUMN y TEXT")


def test_a_failing_step_keeps_the_steps_before_it(tmp_path: Path, monkeypatch) -> None:
    """Each step has its own transaction: steps 2-4 stay done, step 5 is undone entirely."""
    make_old_store(tmp_path / "old", 1)
    steps = [*schema.MIGRATIONS[:4], Migration(5, "broken", _broken)]
    monkeypatch.setattr(schema, "MIGRATIONS", steps)
    with pytest.raises(StoreError, match=r"study\.sqlite cannot be used: SQLite says"):
        RunStore(tmp_path / "old")
    path = tmp_path / "old" / STORE_FILE
    tables = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert version_of(path) == "4"
    assert "reference_judgments" in tables and "half_made" not in tables
    assert old_columns(path, V1_ROWS) == V1_ROWS  # the UPDATE of the failed step was undone
    assert "answer" not in {r[1] for r in query(path, "PRAGMA table_info(judgments)")}


def test_a_new_store_is_whole_or_absent(tmp_path: Path, monkeypatch) -> None:
    """A new store runs every step in one transaction: a failure leaves no tables."""
    broken = Migration(SCHEMA_VERSION + 1, "x", _broken)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError):
        RunStore(tmp_path / "new")
    assert query(tmp_path / "new" / STORE_FILE, "SELECT name FROM sqlite_master") == []


def _host_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE study_runs ADD COLUMN host TEXT NOT NULL DEFAULT 'unknown'")
    conn.execute("UPDATE study_runs SET host = 'lab' WHERE finished_at IS NOT NULL")


def test_a_later_step_reaches_old_and_new_stores_alike(tmp_path: Path, monkeypatch) -> None:
    make_old_store(tmp_path / "old", 4)
    step = Migration(SCHEMA_VERSION + 1, "study_runs.host", _host_column)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with RunStore(tmp_path / "old") as store:
        row = store.conn.execute("SELECT id, provenance, host FROM study_runs").fetchone()
        assert tuple(row) == (1, '{"judges": {}}', "lab")  # the step rewrote the old row
    with RunStore(tmp_path / "new") as store:
        run_id = store.start_run({"judges": {}})
        row = store.conn.execute("SELECT host FROM study_runs WHERE id = ?", (run_id,))
        assert row.fetchone()[0] == "unknown"
    assert version_of(tmp_path / "new" / STORE_FILE) == str(SCHEMA_VERSION + 1)
    assert columns(tmp_path / "old" / STORE_FILE) == columns(tmp_path / "new" / STORE_FILE)


@pytest.mark.parametrize("read_only", [False, True])
def test_a_newer_store_is_refused_untouched(tmp_path: Path, read_only: bool) -> None:
    make_old_store(tmp_path / "run", 4)
    path = tmp_path / "run" / STORE_FILE
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    conn.close()
    before = path.read_bytes()
    expected = f"schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}); upgrade vlmalign to read it"
    with pytest.raises(StoreError, match="was written by a newer vlmalign") as caught:
        RunStore(tmp_path / "run", read_only=read_only)
    assert str(caught.value).endswith(expected)
    assert path.read_bytes() == before


# --- every insert names its columns -----------------------------------------------------------
def _reverse_columns(path: Path, table: str) -> None:
    """Rebuild `table` with its columns in the opposite order (same names, types and key)."""
    info = query(path, f"PRAGMA table_info({table})")
    key = [name for *_, name, _, _, _, pk in sorted(info, key=lambda r: r[5]) if pk]
    cols = [f"{name} {kind}{' NOT NULL' if notnull else ''}" for _, name, kind, notnull, *_ in info]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f"DROP TABLE {table}")
        conn.execute(
            f"CREATE TABLE {table} ({', '.join(cols[::-1])}, PRIMARY KEY ({', '.join(key)}))"
        )
    conn.close()


def test_rows_do_not_depend_on_column_order(tmp_path: Path) -> None:
    RunStore(tmp_path / "run").close()
    path = tmp_path / "run" / STORE_FILE
    for table in ("generations", "judgments", "reference_judgments", "finetune_epochs"):
        _reverse_columns(path, table)
    generation = GenerationRow(
        "g1", "base", "m", "fp", "ad", D, "q1", "test", 2, 1, 7, "i" * 64, "P", "{}", "No."
    )
    judgment = JudgmentRow("g1", "stance", C, False, 0.0, {"stance": "no"}, "no", "reads no")
    reference = ReferenceJudgmentRow(D, "q1", "ideal", "stance", C, None, None, {}, "unclear")
    with RunStore(tmp_path / "run") as store:
        store.add_generations([generation])
        store.add_judgments([judgment])
        store.add_reference_judgments([reference])
        store.record_finetune({"adapter_hash": "a", "epoch_losses": [{"epoch": 1, "loss": 0.5}]})
        store.add_labels([LabelRow("g1", "ana", "unsure", "hm", T)])
        assert store.generations(["g1"]) == [generation]
        assert store.judgments("stance", C, ["g1"]) == {"g1": judgment}
        assert store.reference_judgments(D, "stance", C) == {("q1", "ideal"): reference}
        assert store.labels() == [LabelRow("g1", "ana", "unsure", "hm", T, "app", 1)]
    assert query(path, "SELECT adapter_hash, epoch, loss, seconds FROM finetune_epochs") == [
        ("a", 1, 0.5, None)
    ]
