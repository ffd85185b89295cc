"""The run store: one SQLite file per run directory (dataset snapshot, generations, judgments).

Every generation is keyed by a hash of what determines it, so a rerun skips finished rows, and
each batch is written in one transaction, so an interrupted run never leaves half a batch.
The file is in WAL mode (readers never wait for a writer; a killed writer loses only its open
transaction), older schemas are migrated step by step on opening, and every SQLite failure is
raised as a one-line `StoreError` that names the file and what to do (docs/reliability.md).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from vlmalign.data.dataset import Dataset
from vlmalign.data.schema import Item
from vlmalign.errors import StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4  # 2: finetune_epochs; 3: run_generations, annotators, labels; 4: references
BUSY_TIMEOUT_S = 5.0  # how long a write waits for another process's transaction to end
LABELS = ("aligned", "misaligned", "unsure")  # what a human annotator may answer
STORE_FILE = "study.sqlite"

# Schema version 1; each later version's tables come from its step in MIGRATIONS, so every
# table is written once and a new store gets exactly what a migrated one has.
_BASE_SCHEMA = """
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

# How a store of schema N-1 becomes schema N: (N, SQL), in order. A new store gets `_schema()`
# (the base and every step) at once; an older one runs the steps above its version, each in one
# transaction with its version bump. A step may CREATE or ALTER TABLE ... ADD COLUMN; rows are
# always kept. To change the schema, bump SCHEMA_VERSION and append its step.
MIGRATIONS: list[tuple[int, str]] = [
    (
        2,
        """CREATE TABLE IF NOT EXISTS finetune_epochs (
    adapter_hash TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL NOT NULL,
    seconds REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (adapter_hash, epoch)
);""",
    ),
    (
        3,
        """CREATE TABLE IF NOT EXISTS datasets (
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
CREATE INDEX IF NOT EXISTS labels_by_generation ON labels (generation_key, annotator, id);""",
    ),
    (
        4,
        """CREATE TABLE IF NOT EXISTS reference_judgments (
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
);""",
    ),
]


def _schema() -> str:
    """The whole current schema: version 1 and every migration step, in order."""
    return _BASE_SCHEMA + "\n".join(sql for _, sql in MIGRATIONS) + "\n"


def store_error(path: Path, exc: BaseException) -> StoreError:
    """One line for a SQLite (or OS) failure on `path`: what is wrong and what to do."""
    text = str(exc)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return StoreError(path, "is locked by another process; retry when it finishes")
    if "disk is full" in low or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return StoreError(
            path,
            "cannot be written: the disk is full; free some space and rerun (work already "
            "recorded is kept)",
        )
    if "not a database" in low or "file is encrypted" in low:
        return StoreError(
            path,
            f"is not a vlmalign store ({text}): move it away, or point at another run directory",
        )
    if "malformed" in low or "corrupt" in low:
        return StoreError(
            path,
            f"is damaged ({text}): restore it from a backup, or rerun the study into a new "
            "run directory",
        )
    if "readonly" in low or "read-only" in low:
        return StoreError(
            path,
            f"is read-only ({text}): copy the run directory somewhere writable, or fix "
            "its permissions",
        )
    if "unable to open" in low:
        return StoreError(
            path, f"cannot be opened ({text}): check the file and its folder exist and are readable"
        )
    return StoreError(path, f"cannot be used: SQLite says {text!r}; `vlmalign store check` it")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _mapped(
    method: Callable[Concatenate[RunStore, _P], _R],
) -> Callable[Concatenate[RunStore, _P], _R]:
    """Raise a store method's SQLite failures as one-line `StoreError`s."""

    @functools.wraps(method)
    def wrapper(self: RunStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc

    return wrapper


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def stable_hash(value: Any) -> str:
    """sha256 of a JSON-serialisable value with sorted keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def generation_key(
    *,
    model_fingerprint: str,
    adapter_hash: str | None,
    image_sha256: str,
    prompt: str,
    sampling: dict[str, Any],
    seed: int,
    sample_index: int,
) -> str:
    return stable_hash(
        {
            "model": model_fingerprint,
            "adapter": adapter_hash,
            "image": image_sha256,
            "prompt": prompt,
            "sampling": sampling,
            "seed": seed,
            "sample": sample_index,
        }
    )


@dataclass(frozen=True)
class GenerationRow:
    key: str
    variant: str
    model: str
    model_fingerprint: str
    adapter_hash: str | None
    dataset_sha256: str
    item_id: str
    split: str
    shots: int
    sample_index: int
    seed: int
    image_sha256: str
    prompt: str
    sampling: str
    response: str


@dataclass(frozen=True)
class LabelRow:
    """One human label; an annotator's later label of the same response revises it."""

    generation_key: str
    annotator: str
    label: str
    note: str
    created_at: str
    source: str = "app"
    id: int | None = None


@dataclass(frozen=True)
class ReferenceJudgmentRow:
    """A judge's verdict on one reference answer of an item (judge validity)."""

    dataset_sha256: str
    item_id: str
    side: str  # ideal | misaligned
    judge: str
    judge_config_sha256: str
    aligned: bool | None
    score: float | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class JudgmentRow:
    generation_key: str
    judge: str
    judge_config_sha256: str
    aligned: bool | None
    score: float | None
    detail: dict[str, Any]


def _verdict_columns(
    aligned: bool | None, score: float | None, detail: dict[str, Any]
) -> tuple[int | None, float | None, str]:
    """A verdict as stored: aligned as 0/1/NULL, the score, the detail as sorted JSON."""
    return (None if aligned is None else int(aligned), score, json.dumps(detail, sort_keys=True))


def _verdict_fields(row: sqlite3.Row) -> tuple[bool | None, float | None, dict[str, Any]]:
    """A stored verdict read back (the inverse of `_verdict_columns`)."""
    aligned = None if row["aligned"] is None else bool(row["aligned"])
    return aligned, row["score"], json.loads(row["detail"])


class RunStore:
    """SQLite access for one run directory.

    `read_only=True` opens an existing store without ever writing to it (for reports and
    exports; works in a read-only directory). A store of an older schema is migrated first,
    which needs write access once."""

    def __init__(
        self, run_dir: Path, check_same_thread: bool = True, read_only: bool = False
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / STORE_FILE
        self.read_only = read_only
        if read_only and not self.path.is_file():
            raise StoreError(self.path, "does not exist; run `vlmalign study` first")
        if not read_only:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(self.path, f"cannot be created: {exc.strerror}") from exc
        self._check_same_thread = check_same_thread
        self.conn = self._connect(check_same_thread)
        try:
            self._open()
        except BaseException:
            self.conn.close()
            raise

    def _connect(self, check_same_thread: bool) -> sqlite3.Connection:
        try:
            if not self.read_only:
                conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=check_same_thread
                )
            else:
                conn = sqlite3.connect(
                    self.path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    check_same_thread=check_same_thread,
                )
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc
        conn.row_factory = sqlite3.Row
        return conn

    def _open(self) -> None:
        try:
            version = self._version()
            if self.read_only:
                if version is not None and version < SCHEMA_VERSION:
                    self._upgrade_elsewhere()
                    version = self._version()
                self._check_version(version)
                self.conn.execute("PRAGMA query_only = ON")
                return
            self._check_version(version)
            # WAL: readers never wait for the writer, and a killed writer loses only its
            # open transaction. The mode is stored in the file, so this is set once.
            if str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(version)
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
        try:
            self.conn = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro&immutable=1",
                uri=True,
                check_same_thread=self._check_same_thread,
            )
            self.conn.row_factory = sqlite3.Row
            self._check_version(self._version())
        except sqlite3.Error as exc:
            raise store_error(self.path, first) from exc

    def _version(self) -> int | None:
        """The stored schema version; None for a new, empty file."""
        tables = {
            r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not tables:
            return None
        if "meta" not in tables:
            raise StoreError(
                self.path,
                "is not a vlmalign store (an SQLite file without its tables): move "
                "it away, or point at another run directory",
            )
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row["value"]) if row is not None else 1
        except ValueError:
            raise StoreError(
                self.path,
                f"has an unreadable schema version {row['value']!r}: it is damaged; "
                "rerun the study into a new run directory",
            ) from None

    def _check_version(self, version: int | None) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                self.path,
                f"was written by a newer vlmalign (schema {version} > "
                f"{SCHEMA_VERSION}); upgrade vlmalign to read it",
            )
        if self.read_only and version is None:
            raise StoreError(self.path, "is empty: not a vlmalign store; run `vlmalign study`")

    def _upgrade_elsewhere(self) -> None:
        """Migrate an older store through a short writable connection, before reading it."""
        try:
            RunStore(self.run_dir).close()
        except StoreError as exc:
            raise StoreError(
                self.path,
                f"has an older schema and must be upgraded before it can be read, "
                f"which failed: {exc}",
            ) from exc

    def _migrate(self, version: int | None) -> None:
        """Create a new store at SCHEMA_VERSION, or run each step above an older version."""
        if version is None:
            steps = [(SCHEMA_VERSION, _schema())]
        else:
            steps = [(v, sql) for v, sql in MIGRATIONS if v > version]
        for target, sql in steps:
            script = (
                "BEGIN IMMEDIATE;\n"
                f"{sql}\n"
                "INSERT OR REPLACE INTO meta (key, value) "
                f"VALUES ('schema_version', '{target}');\nCOMMIT;"
            )
            try:
                self.conn.executescript(script)
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.rollback()
                raise
            if version is not None:
                log.info("%s: migrated the store to schema %d", self.path, target)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit everything in the block, or nothing."""
        try:
            with self.conn:
                yield self.conn
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc

    # --- dataset --------------------------------------------------------------------------
    @_mapped
    def snapshot_dataset(self, dataset: Dataset) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO datasets VALUES (?, ?, ?)",
                (dataset.sha256, dataset.source, str(dataset.base_dir)),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)",
                [
                    (dataset.sha256, r.item.id, r.line, r.item.model_dump_json())
                    for r in dataset.records
                ],
            )

    @_mapped
    def item(self, item_id: str) -> tuple[Item, Path] | None:
        """The newest snapshot of an item and the directory its relative image path is from."""
        row = self.conn.execute(
            "SELECT items.json, datasets.base_dir FROM items "
            "LEFT JOIN datasets ON datasets.sha256 = items.dataset_sha256 "
            "WHERE items.id = ? ORDER BY items.rowid DESC LIMIT 1",
            (item_id,),
        ).fetchone()
        if row is None:
            return None
        return Item.model_validate_json(row["json"]), Path(row["base_dir"] or self.run_dir)

    @_mapped
    def items(self, dataset_sha256: str) -> dict[str, Item]:
        rows = self.conn.execute(
            "SELECT json FROM items WHERE dataset_sha256 = ?", (dataset_sha256,)
        )
        items = (Item.model_validate_json(r["json"]) for r in rows)
        return {item.id: item for item in items}

    # --- generations ----------------------------------------------------------------------
    def _rows_in(
        self, sql: str, params: Sequence[Any], keys: Iterable[str]
    ) -> Iterator[sqlite3.Row]:
        """Run `sql ... IN (?)` over the keys in chunks (SQLite caps bound parameters)."""
        wanted = list(keys)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            yield from self.conn.execute(f"{sql} ({marks})", [*params, *chunk])

    @_mapped
    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        rows = self._rows_in("SELECT key FROM generations WHERE key IN", (), keys)
        return {r["key"] for r in rows}

    @_mapped
    def add_generations(self, rows: Sequence[GenerationRow]) -> None:
        stamp = now()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO generations VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.key,
                        r.variant,
                        r.model,
                        r.model_fingerprint,
                        r.adapter_hash,
                        r.dataset_sha256,
                        r.item_id,
                        r.split,
                        r.shots,
                        r.sample_index,
                        r.seed,
                        r.image_sha256,
                        r.prompt,
                        r.sampling,
                        r.response,
                        stamp,
                    )
                    for r in rows
                ],
            )

    @_mapped
    def generations(self, keys: Sequence[str]) -> list[GenerationRow]:
        """Rows for these keys, in the given order (missing keys are skipped)."""
        by_key: dict[str, GenerationRow] = {}
        for row in self._rows_in("SELECT * FROM generations WHERE key IN", (), keys):
            fields = {k: row[k] for k in row.keys() if k != "created_at"}  # noqa: SIM118 (Row)
            by_key[row["key"]] = GenerationRow(**fields)
        return [by_key[k] for k in keys if k in by_key]

    # --- judgments ------------------------------------------------------------------------
    @_mapped
    def judged_keys(self, judge: str, config_sha256: str, keys: Sequence[str]) -> set[str]:
        return set(self.judgments(judge, config_sha256, keys))

    @_mapped
    def add_judgments(self, rows: Sequence[JudgmentRow]) -> None:
        stamp = now()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.generation_key,
                        r.judge,
                        r.judge_config_sha256,
                        *_verdict_columns(r.aligned, r.score, r.detail),
                        stamp,
                    )
                    for r in rows
                ],
            )

    @_mapped
    def judgments(
        self, judge: str, config_sha256: str, keys: Sequence[str]
    ) -> dict[str, JudgmentRow]:
        sql = (
            "SELECT * FROM judgments WHERE judge = ? AND judge_config_sha256 = ? "
            "AND generation_key IN"
        )
        found: dict[str, JudgmentRow] = {}
        for row in self._rows_in(sql, (judge, config_sha256), keys):
            found[row["generation_key"]] = JudgmentRow(
                row["generation_key"], judge, config_sha256, *_verdict_fields(row)
            )
        return found

    # --- reference answers (judge validity) ----------------------------------------------
    @_mapped
    def add_reference_judgments(self, rows: Sequence[ReferenceJudgmentRow]) -> None:
        stamp = now()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO reference_judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.dataset_sha256,
                        r.item_id,
                        r.side,
                        r.judge,
                        r.judge_config_sha256,
                        *_verdict_columns(r.aligned, r.score, r.detail),
                        stamp,
                    )
                    for r in rows
                ],
            )

    @_mapped
    def reference_judgments(
        self, dataset_sha256: str, judge: str, config_sha256: str
    ) -> dict[tuple[str, str], ReferenceJudgmentRow]:
        """(item id, side) -> verdict of this judge configuration on that reference answer."""
        rows = self.conn.execute(
            "SELECT * FROM reference_judgments WHERE dataset_sha256 = ? AND judge = ? "
            "AND judge_config_sha256 = ?",
            (dataset_sha256, judge, config_sha256),
        )
        return {
            (r["item_id"], r["side"]): ReferenceJudgmentRow(
                dataset_sha256,
                r["item_id"],
                r["side"],
                judge,
                config_sha256,
                *_verdict_fields(r),
            )
            for r in rows
        }

    # --- finetuning ----------------------------------------------------------------------
    @_mapped
    def record_finetune(self, card: dict[str, Any]) -> None:
        """Per-epoch loss of an adapter (from its card), for the report."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO finetune_epochs VALUES (?, ?, ?, ?, ?)",
                [
                    (card["adapter_hash"], e["epoch"], e["loss"], e.get("seconds"), now())
                    for e in card.get("epoch_losses", [])
                ],
            )

    # --- study runs -----------------------------------------------------------------------
    @_mapped
    def start_run(self, provenance: dict[str, Any]) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO study_runs (started_at, provenance) VALUES (?, ?)",
                (now(), json.dumps(provenance, sort_keys=True, default=str)),
            )
        return int(cursor.lastrowid or 0)

    @_mapped
    def finish_run(self, run_id: int, provenance: dict[str, Any] | None = None) -> None:
        """Mark a run finished, with its final provenance (e.g. the adapter trained meanwhile)."""
        with self.transaction() as conn:
            conn.execute("UPDATE study_runs SET finished_at = ? WHERE id = ?", (now(), run_id))
            if provenance is not None:
                conn.execute(
                    "UPDATE study_runs SET provenance = ? WHERE id = ?",
                    (json.dumps(provenance, sort_keys=True, default=str), run_id),
                )

    @_mapped
    def add_run_generations(self, run_id: int, keys: Iterable[str]) -> None:
        """Record which responses a study run reported on (so reports can be rebuilt)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO run_generations VALUES (?, ?)", [(run_id, k) for k in keys]
            )

    @_mapped
    def latest_run(self) -> tuple[int, dict[str, Any]] | None:
        """The newest finished study run and its provenance."""
        row = self.conn.execute(
            "SELECT id, provenance FROM study_runs WHERE finished_at IS NOT NULL "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row["id"]), json.loads(row["provenance"]))

    @_mapped
    def unfinished_runs(self, after: int = 0) -> list[tuple[int, str]]:
        """(id, started_at) of the study runs newer than run `after` that never finished: killed,
        failed, or still running (their finished_at is NULL)."""
        rows = self.conn.execute(
            "SELECT id, started_at FROM study_runs WHERE finished_at IS NULL AND id > ? "
            "ORDER BY id",
            (after,),
        )
        return [(int(r["id"]), str(r["started_at"])) for r in rows]

    @_mapped
    def run_generation_keys(self, run_id: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT generation_key FROM run_generations WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return [r["generation_key"] for r in rows]

    @_mapped
    def all_generation_keys(self) -> list[str]:
        return [r["key"] for r in self.conn.execute("SELECT key FROM generations ORDER BY rowid")]

    # --- human labels ---------------------------------------------------------------------
    @_mapped
    def annotator_seed(self, name: str, new_seed: int) -> int:
        """The order seed recorded for an annotator (recorded now, from `new_seed`, if new)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO annotators VALUES (?, ?, ?)", (name, new_seed, now())
            )
            row = conn.execute("SELECT order_seed FROM annotators WHERE name = ?", (name,))
            return int(row.fetchone()["order_seed"])

    @_mapped
    def add_labels(self, rows: Sequence[LabelRow]) -> None:
        """Append labels in one transaction (earlier labels stay as revision history)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO labels (generation_key, annotator, label, note, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.generation_key, r.annotator, r.label, r.note, r.source, r.created_at)
                    for r in rows
                ],
            )

    @_mapped
    def labels(self, latest_only: bool = True) -> list[LabelRow]:
        """Every label in the order given, or only each annotator's latest per response."""
        sql = "SELECT * FROM labels"
        if latest_only:
            sql += " WHERE id IN (SELECT MAX(id) FROM labels GROUP BY generation_key, annotator)"
        rows = self.conn.execute(sql + " ORDER BY id")
        return [
            LabelRow(
                r["generation_key"],
                r["annotator"],
                r["label"],
                r["note"],
                r["created_at"],
                r["source"],
                r["id"],
            )
            for r in rows
        ]
