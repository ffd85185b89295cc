"""Human labels as stored: the `annotators` and `labels` tables.

`labels` is an append-only history: an annotator's later label of the same response revises
the earlier one, which stays as a revision. What labels mean together (majorities, agreement,
coverage) is decided in `vlmalign.judges.human`, not here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

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
