"""Human labels as stored: the `annotators` and `labels` tables.

`labels` is an append-only history: an annotator's later label of the same response revises
the earlier one, which stays as a revision. What labels mean together (majorities, agreement,
coverage) is decided in `vlmalign.judges.human`, not here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from vlmalign.store.connection import StoreConnection, insert_sql, mapped, now

LABELS = ("aligned", "misaligned", "unsure")  # what a human annotator may answer


@dataclass(frozen=True)
class LabelRow:
    """One human label; an annotator's later label of the same response revises it."""

    generation_key: str
    annotator: str
    label: str
    note: str
    created_at: str
    source: str = "app"  # app | import:FILE
    id: int | None = None  # set once stored

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LabelRow:
        return cls(
            row["generation_key"],
            row["annotator"],
            row["label"],
            row["note"],
            row["created_at"],
            row["source"],
            int(row["id"]),
        )


_LABEL_COLUMNS = ("generation_key", "annotator", "label", "note", "source", "created_at")


class LabelTables:
    """Annotators (with the seed of their order) and their labels."""

    def __init__(self, db: StoreConnection) -> None:
        self.db = db

    @mapped
    def annotator_seed(self, name: str, new_seed: int) -> int:
        """The order seed recorded for an annotator (recorded now, from `new_seed`, if new)."""
        with self.db.transaction() as conn:
            conn.execute(
                insert_sql("annotators", ("name", "order_seed", "created_at"), "INSERT OR IGNORE"),
                {"name": name, "order_seed": new_seed, "created_at": now()},
            )
            row = conn.execute(
                "SELECT order_seed FROM annotators WHERE name = :name", {"name": name}
            )
            return int(row.fetchone()["order_seed"])

    @mapped
    def add_labels(self, rows: Sequence[LabelRow]) -> None:
        """Append labels in one transaction (earlier labels stay as revision history)."""
        with self.db.transaction() as conn:
            conn.executemany(
                insert_sql("labels", _LABEL_COLUMNS),
                [{c: getattr(r, c) for c in _LABEL_COLUMNS} for r in rows],
            )

    @mapped
    def add_label_once(self, row: LabelRow, window_s: float) -> bool:
        """Append one label unless it repeats the annotator's latest label of that response
        (same label and note) made at most `window_s` seconds apart from it: a double click,
        or a form sent twice, is one label. True when stored.

        The check and the insert are one `BEGIN IMMEDIATE` transaction, so submissions that
        arrive at once, from this process or another, store one label between them; a different
        label, or the same one later, is stored as a revision.
        """
        with self._immediate() as conn:
            latest = conn.execute(
                "SELECT label, note, created_at FROM labels WHERE generation_key = :key "
                "AND annotator = :annotator ORDER BY id DESC LIMIT 1",
                {"key": row.generation_key, "annotator": row.annotator},
            ).fetchone()
            if (
                latest is not None
                and (latest["label"], latest["note"]) == (row.label, row.note)
                and _seconds_apart(latest["created_at"], row.created_at) <= window_s
            ):
                return False
            conn.execute(
                insert_sql("labels", _LABEL_COLUMNS), {c: getattr(row, c) for c in _LABEL_COLUMNS}
            )
            return True

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A transaction that takes the write lock at once (waiting up to the busy timeout),
        so what it reads cannot change before it writes."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.commit()
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    @mapped
    def labels(self, latest_only: bool = True, after_id: int = 0) -> list[LabelRow]:
        """Labels in the order given (with an id above `after_id`): every revision, or only
        each annotator's latest label per response."""
        sql = "SELECT * FROM labels WHERE id > :after"
        if latest_only:
            sql += " AND id IN (SELECT MAX(id) FROM labels GROUP BY generation_key, annotator)"
        rows = self.db.conn.execute(sql + " ORDER BY id", {"after": after_id})
        return [LabelRow.from_row(r) for r in rows]

    @mapped
    def label(self, label_id: int) -> LabelRow | None:
        """One stored label by its id."""
        row = self.db.conn.execute(
            "SELECT * FROM labels WHERE id = :id", {"id": label_id}
        ).fetchone()
        return None if row is None else LabelRow.from_row(row)


def _seconds_apart(first: str, second: str) -> float:
    """How far apart two stored times are; infinite when either is not an ISO 8601 time with
    a timezone (labels imported long ago may hold anything the import accepted)."""
    try:
        return abs((datetime.fromisoformat(second) - datetime.fromisoformat(first)).total_seconds())
    except (TypeError, ValueError):  # unparseable, or one naive and one aware
        return float("inf")
