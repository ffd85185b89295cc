"""The run store: one SQLite file per run directory (dataset snapshot, generations, judgments).

Every generation is keyed by a hash of what determines it, so a rerun skips finished rows, and
each batch is written in one transaction, so an interrupted run never leaves half a batch.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vlmalign.data.dataset import Dataset
from vlmalign.data.schema import Item

SCHEMA_VERSION = 4  # 2: finetune_epochs; 3: run_generations, annotators, labels; 4: references
LABELS = ("aligned", "misaligned", "unsure")  # what a human annotator may answer
STORE_FILE = "study.sqlite"

_SCHEMA = """
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


class RunStore:
    """SQLite access for one run directory."""

    def __init__(self, run_dir: Path, check_same_thread: bool = True) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / STORE_FILE
        self.conn = sqlite3.connect(self.path, check_same_thread=check_same_thread)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit everything in the block, or nothing."""
        with self.conn:
            yield self.conn

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row["value"]) < SCHEMA_VERSION:  # older tables are kept; new ones added
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
            elif int(row["value"]) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer vlmalign; upgrade to read it"
                )

    # --- dataset --------------------------------------------------------------------------
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

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        rows = self._rows_in("SELECT key FROM generations WHERE key IN", (), keys)
        return {r["key"] for r in rows}

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

    def generations(self, keys: Sequence[str]) -> list[GenerationRow]:
        """Rows for these keys, in the given order (missing keys are skipped)."""
        by_key: dict[str, GenerationRow] = {}
        for row in self._rows_in("SELECT * FROM generations WHERE key IN", (), keys):
            fields = {k: row[k] for k in row.keys() if k != "created_at"}  # noqa: SIM118 (Row)
            by_key[row["key"]] = GenerationRow(**fields)
        return [by_key[k] for k in keys if k in by_key]

    # --- judgments ------------------------------------------------------------------------
    def judged_keys(self, judge: str, config_sha256: str, keys: Sequence[str]) -> set[str]:
        return set(self.judgments(judge, config_sha256, keys))

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
                        None if r.aligned is None else int(r.aligned),
                        r.score,
                        json.dumps(r.detail, sort_keys=True),
                        stamp,
                    )
                    for r in rows
                ],
            )

    def judgments(
        self, judge: str, config_sha256: str, keys: Sequence[str]
    ) -> dict[str, JudgmentRow]:
        sql = (
            "SELECT * FROM judgments WHERE judge = ? AND judge_config_sha256 = ? "
            "AND generation_key IN"
        )
        found: dict[str, JudgmentRow] = {}
        for row in self._rows_in(sql, (judge, config_sha256), keys):
            aligned = None if row["aligned"] is None else bool(row["aligned"])
            found[row["generation_key"]] = JudgmentRow(
                row["generation_key"],
                judge,
                config_sha256,
                aligned,
                row["score"],
                json.loads(row["detail"]),
            )
        return found

    # --- reference answers (judge validity) ----------------------------------------------
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
                        None if r.aligned is None else int(r.aligned),
                        r.score,
                        json.dumps(r.detail, sort_keys=True),
                        stamp,
                    )
                    for r in rows
                ],
            )

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
                None if r["aligned"] is None else bool(r["aligned"]),
                r["score"],
                json.loads(r["detail"]),
            )
            for r in rows
        }

    # --- finetuning ----------------------------------------------------------------------
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
    def start_run(self, provenance: dict[str, Any]) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO study_runs (started_at, provenance) VALUES (?, ?)",
                (now(), json.dumps(provenance, sort_keys=True, default=str)),
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, provenance: dict[str, Any] | None = None) -> None:
        """Mark a run finished, with its final provenance (e.g. the adapter trained meanwhile)."""
        with self.transaction() as conn:
            conn.execute("UPDATE study_runs SET finished_at = ? WHERE id = ?", (now(), run_id))
            if provenance is not None:
                conn.execute(
                    "UPDATE study_runs SET provenance = ? WHERE id = ?",
                    (json.dumps(provenance, sort_keys=True, default=str), run_id),
                )

    def add_run_generations(self, run_id: int, keys: Iterable[str]) -> None:
        """Record which responses a study run reported on (so reports can be rebuilt)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO run_generations VALUES (?, ?)", [(run_id, k) for k in keys]
            )

    def latest_run(self) -> tuple[int, dict[str, Any]] | None:
        """The newest finished study run and its provenance."""
        row = self.conn.execute(
            "SELECT id, provenance FROM study_runs WHERE finished_at IS NOT NULL "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row["id"]), json.loads(row["provenance"]))

    def run_generation_keys(self, run_id: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT generation_key FROM run_generations WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return [r["generation_key"] for r in rows]

    def all_generation_keys(self) -> list[str]:
        return [r["key"] for r in self.conn.execute("SELECT key FROM generations ORDER BY rowid")]

    # --- human labels ---------------------------------------------------------------------
    def annotator_seed(self, name: str, new_seed: int) -> int:
        """The order seed recorded for an annotator (recorded now, from `new_seed`, if new)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO annotators VALUES (?, ?, ?)", (name, new_seed, now())
            )
            row = conn.execute("SELECT order_seed FROM annotators WHERE name = ?", (name,))
            return int(row.fetchone()["order_seed"])

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
