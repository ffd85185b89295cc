"""One SQLite connection to a run's store: how it is opened, and how its failures read.

Writers use WAL (readers never wait for a writer; a killed writer loses only its open
transaction), `foreign_keys = ON` and a busy timeout. A read-only connection never writes, not
even in a folder it cannot write to. Opening brings an older schema up to date (`schema.py`)
and refuses a newer one. Only a file that does not exist yet becomes a new store: an existing
empty (0-byte) file is refused by every opening, never silently made into one. Every SQLite
failure becomes a one-line `StoreError` that names the file and what to do
(docs/reliability.md).
"""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from vlmalign.errors import StoreError
from vlmalign.store import schema

STORE_FILE = "study.sqlite"
BUSY_TIMEOUT_S = 5.0  # how long a write waits for another process's transaction to end
IN_CHUNK = 500  # keys per `IN (...)` query (SQLite caps the number of bound parameters)


def now() -> str:
    """A time as the store records it: UTC, ISO 8601, whole seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# SQLite's primary result codes (`sqlite3.Error.sqlite_errorname` without its extension, as
# `SQLITE_BUSY_SNAPSHOT` -> `BUSY`) -> what the store's problem is.
PROBLEM_OF_CODE = {
    "BUSY": "locked",
    "LOCKED": "locked",
    "FULL": "full",
    "NOTADB": "not a store",
    "CORRUPT": "damaged",
    "READONLY": "read-only",
    "CANTOPEN": "cannot open",
}


def store_problem(exc: BaseException) -> str | None:
    """The kind of failure: from SQLite's own result code where it gives one, else (an OS error,
    or a failure with no code) from the text."""
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith("SQLITE_"):
        code = name.removeprefix("SQLITE_").split("_")[0]
        if code in PROBLEM_OF_CODE:
            return PROBLEM_OF_CODE[code]
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "full"
    low = str(exc).lower()
    for words, problem in (
        (("locked", "busy"), "locked"),
        (("disk is full",), "full"),
        (("not a database", "file is encrypted"), "not a store"),
        (("malformed", "corrupt"), "damaged"),
        (("readonly", "read-only"), "read-only"),
        (("unable to open",), "cannot open"),
    ):
        if any(word in low for word in words):
            return problem
    return None


def store_error(path: Path, exc: BaseException) -> StoreError:
    """One line for a SQLite (or OS) failure on `path`: what is wrong and what to do."""
    text = str(exc)
    problem = store_problem(exc)
    if problem == "locked":
        return StoreError(path, "is locked by another process; retry when it finishes", problem)
    if problem == "full":
        return StoreError(
            path,
            "cannot be written: the disk is full; free some space and rerun (work already "
            "recorded is kept)",
            problem,
        )
    if problem == "not a store":
        return StoreError(
            path,
            f"is not a vlmalign store ({text}): move it away, or point at another run directory",
            problem,
        )
    if problem == "damaged":
        return StoreError(
            path,
            f"is damaged ({text}): restore it from a backup, or rerun the study into a new "
            "run directory",
            problem,
        )
    if problem == "read-only":
        return StoreError(
            path,
            f"is read-only ({text}): copy the run directory somewhere writable, or fix "
            "its permissions",
            problem,
        )
    if problem == "cannot open":
        return StoreError(
            path,
            f"cannot be opened ({text}): check the file and its folder exist and are readable",
            problem,
        )
    return StoreError(path, f"cannot be used: SQLite says {text!r}; `vlmalign store check` it")


class StoreConnection:
    """The open SQLite connection of one run directory's store.

    `read_only=True` opens an existing store without ever writing to it (for reports and
    exports; works in a read-only directory). A store of an older schema is migrated first,
    through a short writable connection, which needs write access once.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        read_only: bool = False,
        check_same_thread: bool = True,
        busy_timeout_s: float | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / STORE_FILE
        self.read_only = read_only
        self._check_same_thread = check_same_thread
        self._busy_timeout_s = BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
        if read_only and not self.path.is_file():
            raise StoreError(self.path, "does not exist; run `vlmalign study` first")
        refuse_empty_file(run_dir)
        if not read_only:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(self.path, f"cannot be created: {exc.strerror}") from exc
        self.conn = self._connect()
        try:
            self._open()
        except BaseException:
            self.conn.close()
            raise

    def _connect(self, query: str = "") -> sqlite3.Connection:
        """A connection to the file; `query` (e.g. "mode=ro") opens it by URI."""
        target = self.path if not query else self.path.resolve().as_uri() + "?" + query
        try:
            conn = sqlite3.connect(
                target,
                uri=bool(query),
                timeout=max(0.0, self._busy_timeout_s),
                check_same_thread=self._check_same_thread,
            )
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _open(self) -> None:
        try:
            version = schema.stored_version(self.conn, self.path)
            if self.read_only:
                if version is not None and version < schema.SCHEMA_VERSION:
                    self._upgrade_elsewhere()
                    version = schema.stored_version(self.conn, self.path)
                self._check_version(version)
                self.conn.execute("PRAGMA query_only = ON")
                return
            self._check_version(version)
            # The journal mode is stored in the file, so WAL is set once; it cannot change
            # inside a transaction, so before any migration step.
            if str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            schema.migrate(self.conn, version, self.path)
        except sqlite3.OperationalError as exc:
            cannot_share = "unable to open" in str(exc).lower() or "readonly" in str(exc).lower()
            if self.read_only and cannot_share and not os.access(self.run_dir, os.W_OK):
                self._open_immutable(exc)
                return
            raise store_error(self.path, exc) from exc
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc

    def _open_immutable(self, first: sqlite3.Error) -> None:
        """A WAL store in a folder we cannot write to (no -shm file can be made): nobody can
        be writing it either, so read it as an immutable file."""
        self.conn.close()
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:  # immutable would not see these changes
            raise StoreError(
                self.path,
                "has changes in its -wal file that cannot be read while its folder is "
                "read-only: make the folder writable once (any vlmalign command then reads it)",
            ) from first
        self.conn = self._connect("mode=ro&immutable=1")
        try:
            self._check_version(schema.stored_version(self.conn, self.path))
        except sqlite3.Error as exc:
            raise store_error(self.path, first) from exc

    def _check_version(self, version: int | None) -> None:
        if version is not None and version > schema.SCHEMA_VERSION:
            raise StoreError(
                self.path,
                f"was written by a newer vlmalign (schema {version} > "
                f"{schema.SCHEMA_VERSION}); upgrade vlmalign to read it",
            )
        if self.read_only and version is None:
            raise StoreError(self.path, "is empty: not a vlmalign store; run `vlmalign study`")

    def _upgrade_elsewhere(self) -> None:
        """Migrate an older store through a short writable connection, before reading it."""
        try:
            StoreConnection(self.run_dir).close()
        except StoreError as exc:
            raise StoreError(
                self.path,
                f"has an older schema and must be upgraded before it can be read, "
                f"which failed: {exc}",
            ) from exc

    def close(self) -> None:
        self.conn.close()

    def check_intact(self, refused: str) -> None:
        """Refuse a damaged store, before reading or writing what would be built on it: SQLite's
        `integrity_check`, as `vlmalign store check` runs it first (it reads every page once).
        `refused` says what was not done ("nothing was imported")."""
        try:
            found = [str(row[0]) for row in self.conn.execute("PRAGMA integrity_check(1)")]
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc
        if found == ["ok"]:
            return
        lines = [line for text in found for line in text.splitlines()]
        first = next((line for line in lines if not line.startswith("***")), "damaged")
        raise StoreError(
            self.path,
            f"is damaged (SQLite's integrity check: {first}); {refused}. `vlmalign store "
            "check` lists the damage; restore the store from a backup, or rerun the study into "
            "a new run directory",
            "damaged",
        )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit everything in the block, or nothing."""
        try:
            with self.conn:
                yield self.conn
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc

    def rows_in(
        self, sql: str, params: Mapping[str, Any], keys: Iterable[str]
    ) -> Iterator[sqlite3.Row]:
        """Run `sql`, which ends in `IN`, over the keys in chunks; `params` fill its other
        named parameters (the keys are bound as :in_0, :in_1, ...)."""
        wanted = list(keys)
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = {f"in_{i}": key for i, key in enumerate(wanted[start : start + IN_CHUNK])}
            names = ", ".join(f":{name}" for name in chunk)
            yield from self.conn.execute(f"{sql} ({names})", {**params, **chunk})


def refuse_empty_file(run_dir: Path) -> None:
    """A StoreError when `run_dir` holds an empty (0-byte) store file. SQLite would take it for a
    new database (and a writer would make it a store); a store vlmalign makes has its first page
    from its first statement (`PRAGMA journal_mode = WAL`), so this is a failed copy, a
    truncation or a `touch`. A study asks before it loads its model."""
    path = run_dir / STORE_FILE
    if _empty_file(path):
        raise StoreError(
            path,
            "is an empty file (0 bytes), not a vlmalign store: it holds nothing; delete it, "
            "then run `vlmalign study` to start a new store there",
            "not a store",
        )


def _empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size == 0
    except OSError:  # unreadable: opening it says why
        return False


def insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    """`INSERT INTO table (columns) VALUES (:column, ...)`: every column named, every value a
    named parameter, so rows do not depend on the table's column order."""
    names = ", ".join(columns)
    values = ", ".join(f":{column}" for column in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({values})"


class TableGroup(Protocol):
    """The tables one part of the store reads and writes, over the store's one connection."""

    db: StoreConnection


_G = TypeVar("_G", bound=TableGroup)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def mapped(method: Callable[Concatenate[_G, _P], _R]) -> Callable[Concatenate[_G, _P], _R]:
    """Raise a table group method's SQLite failures as one-line `StoreError`s."""

    @functools.wraps(method)
    def wrapper(self: _G, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.db.path, exc) from exc
        except UnicodeEncodeError as exc:  # SQLite takes UTF-8 text only (nothing is written)
            raise StoreError(
                self.db.path,
                "cannot record text that is not UTF-8 (a file or folder name in another "
                "encoding?); rename it and rerun",
            ) from exc

    return wrapper
