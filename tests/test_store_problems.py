"""SQLite failures sorted by SQLite's own result code (`sqlite_errorname`), from real errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from vlmalign.store import store_problem


def caught(action) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as error:
        action()
    return error.value


def test_a_locked_database_is_busy_by_its_code(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    error = caught(lambda: other.execute("INSERT INTO t VALUES (1)"))
    assert error.sqlite_errorname.startswith("SQLITE_BUSY")
    assert store_problem(error) == "locked"
    holder.execute("ROLLBACK")


def test_a_file_that_is_not_sqlite_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"not a database at all " * 100)
    error = caught(lambda: sqlite3.connect(path).execute("SELECT * FROM sqlite_master"))
    assert error.sqlite_errorname == "SQLITE_NOTADB"
    assert store_problem(error) == "not a store"


def test_a_read_only_database_refuses_writes_by_its_code(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x)")
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    error = caught(lambda: reader.execute("INSERT INTO t VALUES (1)"))
    assert error.sqlite_errorname.startswith("SQLITE_READONLY")
    assert store_problem(error) == "read-only"


def test_a_failure_without_a_code_is_read_from_its_text() -> None:
    assert store_problem(OSError(28, "No space left on device")) == "full"
    assert store_problem(RuntimeError("something else")) is None
