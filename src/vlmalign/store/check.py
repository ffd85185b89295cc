"""`vlmalign store check`: is a run store whole? SQLite integrity, then vlmalign's own rules.

Each problem is one line saying what is wrong and where; an empty list means the store is clean.
A file that cannot be opened as a store at all raises `StoreError` instead (exit code 2).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from vlmalign.store.connection import StoreConnection, store_error

EXAMPLES = 3  # keys named per problem; the rest are counted

# table -> the columns that identify one row (at most one row may have each combination)
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "items": ("dataset_sha256", "id"),
    "datasets": ("sha256",),
    "generations": ("key",),
    "judgments": ("generation_key", "judge", "judge_config_sha256"),
    "reference_judgments": ("dataset_sha256", "item_id", "side", "judge", "judge_config_sha256"),
    "finetune_epochs": ("adapter_hash", "epoch"),
    "run_generations": ("run_id", "generation_key"),
    "annotators": ("name",),
    # labels keep revisions, but one label recorded twice (same time, same everything) is a dup
    "labels": ("generation_key", "annotator", "label", "note", "source", "created_at"),
}

# (what, table, SQL selecting the dangling reference of each orphan row)
ORPHANS: tuple[tuple[str, str, str], ...] = (
    (
        "judgments of missing generations",
        "judgments",
        "SELECT generation_key FROM judgments WHERE generation_key NOT IN "
        "(SELECT key FROM generations)",
    ),
    (
        "labels of missing generations",
        "labels",
        "SELECT generation_key FROM labels WHERE generation_key NOT IN "
        "(SELECT key FROM generations)",
    ),
    (
        "run_generations naming missing generations",
        "run_generations",
        "SELECT generation_key FROM run_generations WHERE generation_key NOT IN "
        "(SELECT key FROM generations)",
    ),
    (
        "run_generations naming missing study runs",
        "run_generations",
        "SELECT DISTINCT run_id FROM run_generations WHERE run_id NOT IN "
        "(SELECT id FROM study_runs)",
    ),
    (
        "reference_judgments of missing items",
        "reference_judgments",
        "SELECT DISTINCT item_id FROM reference_judgments r WHERE NOT EXISTS (SELECT 1 FROM items "
        "i WHERE i.dataset_sha256 = r.dataset_sha256 AND i.id = r.item_id)",
    ),
    (
        "items of datasets with no datasets row",
        "items",
        "SELECT DISTINCT dataset_sha256 FROM items WHERE dataset_sha256 NOT IN "
        "(SELECT sha256 FROM datasets)",
    ),
)
COVERED_BY_ORPHANS = {"judgments", "labels", "run_generations"}  # foreign keys checked above


@dataclass(frozen=True)
class Problem:
    kind: str  # integrity | foreign-key | duplicate | orphan | unfinished
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _examples(values: list[str]) -> str:
    shown = ", ".join(values[:EXAMPLES])
    more = len(values) - EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def _problems(conn: sqlite3.Connection) -> list[Problem]:
    problems: list[Problem] = []
    integrity = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    if integrity != ["ok"]:
        problems += [Problem("integrity", line) for line in integrity]
        return problems  # the rest would read damaged pages; fix this first

    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    by_table: dict[str, list[str]] = {}
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check"):
        if table not in COVERED_BY_ORPHANS:
            by_table.setdefault(f"{table} -> {parent}", []).append(f"row {rowid}")
    for relation, rows in by_table.items():
        problems.append(
            Problem(
                "foreign-key", f"{len(rows)} rows of {relation} point nowhere: {_examples(rows)}"
            )
        )

    for table, columns in NATURAL_KEYS.items():
        if table not in tables:
            continue
        cols = ", ".join(columns)
        dups = conn.execute(
            f"SELECT {cols}, COUNT(*) FROM {table} GROUP BY {cols} HAVING COUNT(*) > 1"
        ).fetchall()
        if dups:
            named = [f"{'/'.join(str(v) for v in row[:-1])} ({row[-1]}x)" for row in dups]
            problems.append(
                Problem(
                    "duplicate",
                    f"{len(dups)} keys of {table} ({cols}) have several rows: {_examples(named)}",
                )
            )

    for what, table, sql in ORPHANS:
        if table not in tables:
            continue
        found = [str(r[0]) for r in conn.execute(sql)]  # one per orphan row
        if found:
            named = list(dict.fromkeys(found))  # each missing key once
            problems.append(Problem("orphan", f"{len(found)} {what}: {_examples(named)}"))

    finished = conn.execute(
        "SELECT MAX(id) FROM study_runs WHERE finished_at IS NOT NULL"
    ).fetchone()[0]
    for run_id, started in conn.execute(
        "SELECT id, started_at FROM study_runs WHERE finished_at IS NULL AND id > :after "
        "ORDER BY id",
        {"after": finished or 0},
    ):
        problems.append(
            Problem(
                "unfinished",
                f"study run {run_id} (started {started}) did not finish (killed, failed or still "
                "running): rerun the study to finish it",
            )
        )
    return problems


def check_store(run_dir: Path) -> list[Problem]:
    """Every problem found in the run directory's store (read only; never changes it).

    Runs older than the newest finished run that never finished are history (a killed run
    that a rerun completed), not problems."""
    db = StoreConnection(run_dir, read_only=True)
    try:
        return _problems(db.conn)
    except sqlite3.Error as exc:
        raise store_error(db.path, exc) from exc
    finally:
        db.close()


def summary(run_dir: Path) -> str:
    """Row counts of a store, for the all-clear line."""
    db = StoreConnection(run_dir, read_only=True)
    try:
        counts = {
            table: db.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("generations", "judgments", "labels", "study_runs")
        }
    except sqlite3.Error as exc:
        raise store_error(db.path, exc) from exc
    finally:
        db.close()
    return ", ".join(f"{n} {table}" for table, n in counts.items())
