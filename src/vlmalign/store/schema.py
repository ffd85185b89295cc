"""The store's schema as a list of migration steps, each from version N-1 to version N.

A step may create tables, add columns and rewrite rows. A new store is built by running every
step from empty (in one transaction), and an older store by running the steps above its version
(each in its own transaction, with its version bump), so both end with the same tables. To
change the schema, append a step and bump SCHEMA_VERSION; never edit a step that shipped.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmalign.errors import StoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
VERDICT_TABLES = ("judgments", "reference_judgments")  # tables holding a judge's verdicts


@dataclass(frozen=True)
class Migration:
    version: int  # the schema version this step produces
    summary: str  # what the step changes, for the log
    apply: Callable[[sqlite3.Connection], None]  # runs inside the step's transaction


def _statements(*sql: str) -> Callable[[sqlite3.Connection], None]:
    """A step that runs these statements in order."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return apply


def _answer_columns(conn: sqlite3.Connection) -> None:
    """Version 5: verdicts gain `answer` (what the judge read) and `explanation`; a stored
    verdict whose detail has a `stance` gets that stance as its answer."""
    for table in VERDICT_TABLES:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN answer TEXT")
        conn.execute(f"ALTER TABLE {table} ADD COLUMN explanation TEXT")
        rows = conn.execute(f"SELECT rowid, detail FROM {table}").fetchall()
        answers = [
            {"row": row[0], "answer": answer}
            for row in rows
            if (answer := _stance_in(row[1])) is not None
        ]
        conn.executemany(f"UPDATE {table} SET answer = :answer WHERE rowid = :row", answers)


def _stance_in(detail: str) -> str | None:
    """The `stance` a stored detail JSON records, if any."""
    try:
        value = json.loads(detail)
    except (TypeError, ValueError):
        return None
    stance = value.get("stance") if isinstance(value, dict) else None
    return stance if isinstance(stance, str) else None


def _endpoint_columns(conn: sqlite3.Connection) -> None:
    """Version 6: what a remote endpoint reports about each response (NULL for in-process
    models): finish reason, token usage, the model name it answered with, its system
    fingerprint, and whether its content filter refused."""
    for column in (
        "finish_reason TEXT",
        "prompt_tokens INTEGER",
        "completion_tokens INTEGER",
        "served_by TEXT",
        "system_fingerprint TEXT",
        "refused INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(f"ALTER TABLE generations ADD COLUMN {column}")


MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "items, generations, judgments, study runs",
        _statements(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE IF NOT EXISTS items (
    dataset_sha256 TEXT NOT NULL,
    id TEXT NOT NULL,
    line INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (dataset_sha256, id)
)""",
            """CREATE TABLE IF NOT EXISTS generations (
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
)""",
            """CREATE TABLE IF NOT EXISTS judgments (
    generation_key TEXT NOT NULL REFERENCES generations(key),
    judge TEXT NOT NULL,
    judge_config_sha256 TEXT NOT NULL,
    aligned INTEGER,
    score REAL,
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (generation_key, judge, judge_config_sha256)
)""",
            """CREATE TABLE IF NOT EXISTS study_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    provenance TEXT NOT NULL
)""",
        ),
    ),
    Migration(
        2,
        "finetune_epochs",
        _statements(
            """CREATE TABLE IF NOT EXISTS finetune_epochs (
    adapter_hash TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    loss REAL NOT NULL,
    seconds REAL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (adapter_hash, epoch)
)""",
        ),
    ),
    Migration(
        3,
        "datasets, run_generations, annotators, labels",
        _statements(
            """CREATE TABLE IF NOT EXISTS datasets (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    base_dir TEXT NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS run_generations (
    run_id INTEGER NOT NULL REFERENCES study_runs(id),
    generation_key TEXT NOT NULL REFERENCES generations(key),
    PRIMARY KEY (run_id, generation_key)
)""",
            """CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    order_seed INTEGER NOT NULL,
    created_at TEXT NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation_key TEXT NOT NULL REFERENCES generations(key),
    annotator TEXT NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('aligned', 'misaligned', 'unsure')),
    note TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'app',
    created_at TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS labels_by_generation "
            "ON labels (generation_key, annotator, id)",
        ),
    ),
    Migration(
        4,
        "reference_judgments",
        _statements(
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
)""",
        ),
    ),
    Migration(5, "verdicts' answer and explanation", _answer_columns),
    Migration(6, "what an endpoint reports about each response", _endpoint_columns),
)


def stored_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The schema version recorded in the file; None for a new, empty file."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if "meta" not in tables:
        raise StoreError(
            path,
            "is not a vlmalign store (an SQLite file without its tables): move "
            "it away, or point at another run directory",
        )
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row is not None else 1
    except ValueError:
        raise StoreError(
            path,
            f"has an unreadable schema version {row[0]!r}: it is damaged; "
            "rerun the study into a new run directory",
        ) from None


def migrate(conn: sqlite3.Connection, version: int | None, path: Path) -> None:
    """Bring a store of `version` (None: a new, empty file) to the newest schema.

    A new store runs every step in one transaction (it is whole or absent); an older store
    runs each step above its version in a transaction of its own, so an interrupted upgrade
    resumes from the last finished step.
    """
    steps = [step for step in MIGRATIONS if step.version > (version or 0)]
    for batch in [steps] if version is None else [[step] for step in steps]:
        if not batch:
            continue
        _run_in_transaction(conn, batch)
        if version is not None:
            log.info(
                "%s: migrated the store to schema %d (%s)",
                path,
                batch[-1].version,
                batch[-1].summary,
            )


def _run_in_transaction(conn: sqlite3.Connection, steps: Sequence[Migration]) -> None:
    """Apply the steps and record the last one's version, all in one transaction or none."""
    previous = conn.isolation_level
    conn.isolation_level = None  # BEGIN and COMMIT are issued here, not by the sqlite3 module
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for step in steps:
                step.apply(conn)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', :version)",
                {"version": str(steps[-1].version)},
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.isolation_level = previous
