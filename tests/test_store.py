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
from vlmalign.errors import StoreError
from vlmalign.judges.base import Verdict
from vlmalign.report.run_data import load_run
from vlmalign.schemas.provenance import Provenance
from vlmalign.store import (
    SCHEMA_VERSION,
    STORE_FILE,
    GenerationRow,
    JudgmentRow,
    LabelRow,
    ReferenceJudgmentRow,
    RunStore,
    connection,
)

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
    "responses export": ["responses", "export", "{run}", "--output", "{tmp}/responses.jsonl"],
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
    "newer schema": (
        _newer_schema,
        rf"was written by a newer vlmalign \(schema 9 > {SCHEMA_VERSION}\); upgrade",
    ),
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
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.05)
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
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.05)
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
        real = store.db.conn
        store.db.conn = _FullDisk(real)  # type: ignore[assignment]
        with pytest.raises(StoreError) as caught:
            store.add_labels([LabelRow(k, "zoe", "aligned", "", "t") for k in keys])
        store.db.conn = real
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
        self.db.conn = _FullDisk(self.db.conn)  # type: ignore[assignment]

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


# --- unfinished runs --------------------------------------------------------------------------
def test_report_names_a_newer_unfinished_run(run: Path, caplog) -> None:
    with RunStore(run) as store:
        finished = store.latest_run()
        newer = store.start_run({"judges": {}})  # killed before it finished
    assert finished is not None
    data = load_run(run)
    assert [run_id for run_id, _ in data.unfinished_after] == [newer]
    # the report shows the last finished run
    assert data.provenance == Provenance.model_validate(finished[1])
    assert f"a newer study run ({newer}" in caplog.text


# --- verdicts and labels as rows ------------------------------------------------------------------
def test_a_judges_verdict_is_stored_whole(tmp_path: Path) -> None:
    verdict = Verdict(
        aligned=False,
        score=0.25,
        answer="yes",
        explanation="reads yes; the aligned answer is no",
        detail={"stance": "yes", "reason": "leading 'yes'"},
    )
    row = JudgmentRow.of("g1", "stance", "c" * 64, verdict)
    assert row == JudgmentRow(
        "g1", "stance", "c" * 64, False, 0.25, verdict.detail, "yes", verdict.explanation
    )
    reference = ReferenceJudgmentRow.of("d" * 64, "q1", "ideal", "stance", "c" * 64, verdict)
    assert (reference.item_id, reference.side, reference.answer) == ("q1", "ideal", "yes")
    generation = GenerationRow(
        "g1", "base", "m", "fp", None, "d" * 64, "q1", "train", 0, 0, 7, "i", "P", "{}", "Yes."
    )
    unclear = JudgmentRow.of("g1", "ethics", "e" * 64, Verdict(aligned=None))
    with RunStore(tmp_path / "r") as store:
        store.add_generations([generation])
        store.add_judgments([row, unclear])
        store.add_reference_judgments([reference])
        assert store.judgments("stance", "c" * 64, ["g1", "g2"]) == {"g1": row}
        assert store.judgments("ethics", "e" * 64, ["g1"])["g1"].answer is None
        assert store.reference_judgments("d" * 64, "stance", "c" * 64) == {
            ("q1", "ideal"): reference
        }


def test_labels_are_read_by_id_and_after_an_id(tmp_path: Path) -> None:
    generation = GenerationRow(
        "g1", "base", "m", "fp", None, "d" * 64, "q1", "train", 0, 0, 7, "i", "P", "{}", "Yes."
    )
    first = LabelRow("g1", "ana", "aligned", "", "t1")
    second = LabelRow("g1", "ana", "misaligned", "on reflection", "t2", "import:x.csv")
    with RunStore(tmp_path / "r") as store:
        store.add_generations([generation])
        store.add_labels([first, second])
        assert store.label(2) == LabelRow(
            "g1", "ana", "misaligned", "on reflection", "t2", "import:x.csv", 2
        )
        assert store.label(3) is None
        assert [r.id for r in store.labels(latest_only=False, after_id=1)] == [2]
        assert [r.label for r in store.labels(latest_only=False)] == ["aligned", "misaligned"]
        assert [r.label for r in store.labels()] == ["misaligned"]
