"""The run store: WAL, migrations, read-only opening, and one-line errors for unusable stores.

Every unusable store (random bytes, a newer schema, read-only, a full disk, a lock) must give
exit code 2 and one line naming the store, with no traceback and nothing half-written."""

from __future__ import annotations

import errno
import io
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from tests.report.conftest import build_run

from vlmalign import store as store_module
from vlmalign.errors import StoreError
from vlmalign.report.run_data import load_run
from vlmalign.store import SCHEMA_VERSION, STORE_FILE, LabelRow, RunStore

REPORT_FILES = ("report.md", "report.html", "results.json", "results.csv", "comparisons.csv")


def cli(*args: str | Path) -> tuple[int, str]:
    """Run `vlmalign ARGS` in this process: (exit code, stderr). Any exception but SystemExit
    (a traceback for the user) fails the test."""
    from vlmalign.cli import main

    err = io.StringIO()
    with patch.object(sys, "argv", ["vlmalign", *map(str, args)]), patch.object(sys, "stderr", err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("built") / "run"
    build_run(run_dir, samples=1, annotators=("ana",))
    return run_dir


@pytest.fixture
def run(built_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of a complete, finished run directory (store only, no report yet)."""
    target = tmp_path / "run"
    shutil.copytree(built_run, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, except the -wal/-shm side files SQLite keeps for a WAL database
    (a reader in a writable folder may leave empty ones; they hold no data of ours)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


# --- what a new store is ----------------------------------------------------------------------
def test_new_store_is_wal_with_busy_timeout(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with sqlite3.connect(tmp_path / "r" / STORE_FILE) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)


def test_readers_do_not_wait_for_a_writer(run: Path) -> None:
    writer = sqlite3.connect(run / STORE_FILE)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM labels")  # uncommitted: readers still see the labels
    try:
        with RunStore(run, read_only=True) as store:
            assert store.labels()
        assert load_run(run).labels
    finally:
        writer.rollback()
        writer.close()


# --- read-only opening ------------------------------------------------------------------------
def test_read_only_store_never_writes(run: Path) -> None:
    before = snapshot(run)
    with RunStore(run, read_only=True) as store:
        assert store.latest_run() is not None
        with pytest.raises(StoreError, match=r"study\.sqlite is read-only .*copy the run"):
            store.add_labels([LabelRow(store.all_generation_keys()[0], "zoe", "aligned", "", "t")])
    assert snapshot(run) == before


def test_read_only_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"study\.sqlite does not exist; run `vlmalign study`"):
        RunStore(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_report_elsewhere_leaves_the_run_directory_untouched(run: Path, tmp_path: Path) -> None:
    before = snapshot(run)
    code, stderr = cli("report", run, "--out", tmp_path / "elsewhere")
    assert code == 0, stderr
    assert snapshot(run) == before
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == sorted(REPORT_FILES)


def _unprivileged() -> list[str] | None:
    """A command prefix that runs as a user who cannot write a chmod 555 folder, or None."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] if setpriv else None


def test_read_only_run_directory_for_real(built_run: Path) -> None:
    """A run directory nobody may write to: `report --out` works, the rest fail in one line."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot make a folder read-only")
    base = Path(tempfile.mkdtemp(prefix="vlmalign-ro-"))
    try:
        base.chmod(0o777)
        run_dir = base / "run"
        shutil.copytree(built_run, run_dir)
        with RunStore(built_run, read_only=True) as store:
            key = store.all_generation_keys()[0]
        (base / "labels.csv").write_text(f"generation_key,annotator,label\n{key},zoe,aligned\n")
        for path in (run_dir / STORE_FILE, run_dir):
            path.chmod(0o555 if path.is_dir() else 0o444)
        before = snapshot(run_dir)
        env = {**os.environ, "MPLCONFIGDIR": str(base / "mpl"), "HOME": str(base)}

        def vlmalign(*args: str | Path) -> subprocess.CompletedProcess[str]:
            command = [*prefix, sys.executable, "-m", "vlmalign", *map(str, args)]
            return subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=300, check=False
            )

        elsewhere = base / "elsewhere"
        done = vlmalign("report", run_dir, "--out", elsewhere)
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in elsewhere.iterdir()) == sorted(REPORT_FILES)
        assert vlmalign("labels", "export", run_dir).returncode == 0
        assert vlmalign("store", "check", run_dir).returncode == 0

        in_place = vlmalign("report", run_dir)
        assert in_place.returncode == 2
        assert "cannot write the report" in one_error_line(in_place.stderr)
        labels = vlmalign("labels", "import", run_dir, base / "labels.csv")
        assert labels.returncode == 2
        assert "study.sqlite is read-only" in one_error_line(labels.stderr)
        assert snapshot(run_dir) == before  # no *.tmp, nothing replaced
    finally:
        for path in base.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base)


# --- unusable stores: exit 2, one line, nothing written -----------------------------------------
COMMANDS = {
    "report": ["report", "{run}"],
    "report elsewhere": ["report", "{run}", "--out", "{tmp}/out"],
    "labels export": ["labels", "export", "{run}", "--output", "{tmp}/labels.csv"],
    "labels import": ["labels", "import", "{run}", "{tmp}/in.csv"],
    "annotate": ["annotate", "{run}", "--port", "1"],
    "store check": ["store", "check", "{run}"],
}


def _args(name: str, run: Path, tmp: Path) -> list[str]:
    (tmp / "in.csv").write_text("generation_key,annotator,label\n")
    return [a.format(run=run, tmp=tmp) for a in COMMANDS[name]]


def _random_bytes(run: Path) -> None:
    for extra in ("-wal", "-shm"):
        (run / (STORE_FILE + extra)).unlink(missing_ok=True)
    (run / STORE_FILE).write_bytes(random.Random(9).randbytes(8192))


def _newer_schema(run: Path) -> None:
    with sqlite3.connect(run / STORE_FILE) as conn:
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    conn.close()


def _foreign_sqlite(run: Path) -> None:
    (run / STORE_FILE).unlink()
    with sqlite3.connect(run / STORE_FILE) as conn:
        conn.execute("CREATE TABLE photos (name TEXT)")
    conn.close()


DAMAGE = {
    "random bytes": (_random_bytes, r"is not a vlmalign store \(file is not a database\)"),
    "newer schema": (_newer_schema, r"was written by a newer vlmalign \(schema 9 > 4\); upgrade"),
    "other sqlite file": (_foreign_sqlite, r"is not a vlmalign store \(an SQLite file"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_unusable_store_is_one_line_exit_2(
    run: Path, tmp_path: Path, damage: str, command: str
) -> None:
    make, pattern = DAMAGE[damage]
    make(run)
    before = snapshot(run)
    code, stderr = cli(*_args(command, run, tmp_path))
    assert code == 2
    line = one_error_line(stderr)
    assert str(run / STORE_FILE) in line
    import re

    assert re.search(pattern, line), line
    assert snapshot(run) == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "labels.csv").exists()


@contextmanager
def _write_lock(run: Path) -> Iterator[None]:
    other = sqlite3.connect(run / STORE_FILE)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    try:
        yield
    finally:
        other.rollback()
        other.close()


def test_locked_store_is_one_line_and_rows_are_untouched(run: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    with RunStore(run) as store, _write_lock(run):
        key = store.all_generation_keys()[0]
        before = len(store.labels(latest_only=False))
        with pytest.raises(StoreError) as caught:
            store.add_labels([LabelRow(key, "zoe", "aligned", "", "t")])
        assert str(caught.value) == (
            f"{run / STORE_FILE} is locked by another process; retry when it finishes"
        )
        assert len(store.labels(latest_only=False)) == before


def test_locked_store_from_the_command_line(run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    with RunStore(run, read_only=True) as store:
        key = store.all_generation_keys()[0]
    (tmp_path / "in.csv").write_text(f"generation_key,annotator,label\n{key},zoe,aligned\n")
    with _write_lock(run):
        code, stderr = cli("labels", "import", run, tmp_path / "in.csv")
        assert code == 2
        assert one_error_line(stderr).endswith(
            "is locked by another process; retry when it finishes"
        )
        # Reading is not blocked by the writer (WAL): a report can still be built.
        assert cli("report", run, "--out", tmp_path / "out")[0] == 0


class _FullDisk:
    """A connection whose writes fail as SQLite reports a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self._conn.executemany(sql, rows)  # half done when the disk fills up
        raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __enter__(self) -> Any:
        return self._conn.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._conn.__exit__(*exc)


def test_full_disk_store_write_keeps_nothing_of_the_batch(run: Path) -> None:
    with RunStore(run) as store:
        keys = store.all_generation_keys()[:3]
        before = store.labels(latest_only=False)
        real = store.conn
        store.conn = _FullDisk(real)  # type: ignore[assignment]
        with pytest.raises(StoreError) as caught:
            store.add_labels([LabelRow(k, "zoe", "aligned", "", "t") for k in keys])
        store.conn = real
        assert str(caught.value).startswith(
            f"{run / STORE_FILE} cannot be written: the disk is full"
        )
        assert store.labels(latest_only=False) == before  # the half-done batch was rolled back


def test_full_disk_from_the_command_line(run: Path, tmp_path: Path, monkeypatch) -> None:
    with RunStore(run, read_only=True) as store:
        key = store.all_generation_keys()[0]
    (tmp_path / "in.csv").write_text(f"generation_key,annotator,label\n{key},zoe,aligned\n")
    real_init = RunStore.__init__

    def full_disk_init(self: RunStore, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self.conn = _FullDisk(self.conn)  # type: ignore[assignment]

    monkeypatch.setattr(RunStore, "__init__", full_disk_init)
    before = snapshot(run)
    code, stderr = cli("labels", "import", run, tmp_path / "in.csv")
    assert code == 2
    assert "cannot be written: the disk is full" in one_error_line(stderr)
    monkeypatch.setattr(RunStore, "__init__", real_init)
    with RunStore(run, read_only=True) as store:
        assert not [r for r in store.labels() if r.annotator == "zoe"]
    assert set(snapshot(run)) == set(before)


def test_full_disk_report_leaves_no_tmp_and_keeps_old_files(run: Path, monkeypatch) -> None:
    assert cli("report", run)[0] == 0
    before = snapshot(run)
    real_write = Path.write_text
    calls = {"n": 0}

    def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 3:  # the third report file does not fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    code, stderr = cli("report", run)
    assert code == 2
    assert "cannot write the report (the disk is full)" in one_error_line(stderr)
    assert snapshot(run) == before  # old report kept whole, no *.tmp left


# --- migrations -------------------------------------------------------------------------------
# The schema of version 3, copied from `git show HEAD~2:src/vlmalign/store.py`.
SCHEMA_V3 = """
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
CREATE TABLE IF NOT EXISTS finetune_epochs (
    adapter_hash TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL NOT NULL,
    seconds REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (adapter_hash, epoch)
);
CREATE TABLE IF NOT EXISTS study_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    provenance TEXT NOT NULL
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
"""
T = "2025-01-01T00:00:00+00:00"
V3_ROWS = {
    "items": [("d" * 64, "q1", 1, '{"id": "q1"}')],
    "datasets": [("d" * 64, "q.jsonl", "/data")],
    "generations": [
        (
            "g1",
            "base",
            "m",
            "fp",
            None,
            "d" * 64,
            "q1",
            "train",
            0,
            0,
            7,
            "i" * 64,
            "P",
            "{}",
            "Yes.",
            T,
        ),
        (
            "g2",
            "base",
            "m",
            "fp",
            None,
            "d" * 64,
            "q1",
            "train",
            1,
            0,
            8,
            "i" * 64,
            "P2",
            "{}",
            "No.",
            T,
        ),
    ],
    "judgments": [("g1", "stance", "c" * 64, 1, None, "{}", T)],
    "finetune_epochs": [("a" * 64, 1, 0.5, 1.0, T)],
    "study_runs": [(1, T, T, '{"judges": {}}')],
    "run_generations": [(1, "g1"), (1, "g2")],
    "annotators": [("ana", 11, T)],
    "labels": [(1, "g1", "ana", "aligned", "", "app", T)],
}


def make_v3_store(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    conn = sqlite3.connect(run_dir / STORE_FILE)  # rollback journal, as version 3 made them
    with conn:
        conn.executescript(SCHEMA_V3)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        for table, rows in V3_ROWS.items():
            marks = ",".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.close()


def table_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in V3_ROWS}
    conn.close()
    return rows


def columns(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's columns (name, type, not null, default, pk), as SQLite reports them."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        found = {t: [r[1:] for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
    conn.close()
    return found


def test_version_3_store_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    make_v3_store(tmp_path / "old")
    with RunStore(tmp_path / "old") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [g.response for g in store.generations(["g1", "g2"])] == ["Yes.", "No."]
        assert store.reference_judgments("d" * 64, "stance", "c" * 64) == {}
    with sqlite3.connect(tmp_path / "old" / STORE_FILE) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    conn.close()
    assert version == (str(SCHEMA_VERSION),)
    assert table_rows(tmp_path / "old" / STORE_FILE) == V3_ROWS
    RunStore(tmp_path / "new").close()
    # the migrated store has exactly the tables and columns of a new one
    assert columns(tmp_path / "old" / STORE_FILE) == columns(tmp_path / "new" / STORE_FILE)


def test_read_only_opening_migrates_an_older_store_first(tmp_path: Path) -> None:
    make_v3_store(tmp_path / "old")
    with RunStore(tmp_path / "old", read_only=True) as store:
        assert store.run_generation_keys(1) == ["g1", "g2"]
    assert table_rows(tmp_path / "old" / STORE_FILE) == V3_ROWS


def test_a_step_may_add_a_column(tmp_path: Path, monkeypatch) -> None:
    make_v3_store(tmp_path / "old")
    step = (
        SCHEMA_VERSION + 1,
        "ALTER TABLE study_runs ADD COLUMN host TEXT NOT NULL DEFAULT 'unknown';",
    )
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, step])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with RunStore(tmp_path / "old") as store:
        row = store.conn.execute("SELECT id, provenance, host FROM study_runs").fetchone()
        assert tuple(row) == (1, '{"judges": {}}', "unknown")
        version = store.conn.execute("SELECT value FROM meta WHERE key='schema_version'")
        assert version.fetchone()[0] == str(SCHEMA_VERSION + 1)


def test_a_failing_step_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    make_v3_store(tmp_path / "old")
    broken = (4, "CREATE TABLE half_made (x INTEGER);\nALTER TABLE no_such ADD COLUMN y TEXT;")
    monkeypatch.setattr(store_module, "MIGRATIONS", [broken])
    with pytest.raises(StoreError, match=r"study\.sqlite cannot be used: SQLite says"):
        RunStore(tmp_path / "old")
    with sqlite3.connect(tmp_path / "old" / STORE_FILE) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    conn.close()
    assert "half_made" not in tables and version == ("3",)
    assert table_rows(tmp_path / "old" / STORE_FILE) == V3_ROWS


# --- unfinished runs --------------------------------------------------------------------------
def test_report_names_a_newer_unfinished_run(run: Path, caplog) -> None:
    with RunStore(run) as store:
        finished = store.latest_run()
        newer = store.start_run({"judges": {}})  # killed before it finished
    assert finished is not None
    data = load_run(run)
    assert [run_id for run_id, _ in data.unfinished_after] == [newer]
    assert data.provenance == finished[1]  # the report shows the last finished run
    assert f"a newer study run ({newer}" in caplog.text
