"""What a study run is made of: the dataset snapshot (`datasets`, `items`), the runs
(`study_runs`, `run_generations`) and the finetuning losses (`finetune_epochs`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlmalign.data.dataset import Dataset
from vlmalign.data.schema import Item
from vlmalign.store.connection import StoreConnection, insert_sql, mapped, now


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class RunTables:
    """Dataset snapshots, study runs and the responses each covers, and finetuning losses."""

    def __init__(self, db: StoreConnection) -> None:
        self.db = db

    # --- dataset snapshot -----------------------------------------------------------------
    @mapped
    def snapshot_dataset(self, dataset: Dataset) -> None:
        """Record the dataset and its items (an item already recorded keeps its snapshot).

        The folder its relative image paths start from is recorded absolute and resolved, so
        `report` and `annotate` find the images from any working directory (runs recorded
        before kept a relative folder, `.`: taken from where the command runs)."""
        items = [
            {
                "dataset": dataset.sha256,
                "id": r.item.id,
                "line": r.line,
                "json": r.item.model_dump_json(),
            }
            for r in dataset.records
        ]
        with self.db.transaction() as conn:
            conn.execute(
                insert_sql("datasets", ("sha256", "source", "base_dir"), "INSERT OR REPLACE"),
                {
                    "sha256": dataset.sha256,
                    "source": dataset.source,
                    "base_dir": str(dataset.base_dir.resolve()),
                },
            )
            conn.executemany(
                "INSERT OR IGNORE INTO items (dataset_sha256, id, line, json) "
                "VALUES (:dataset, :id, :line, :json)",
                items,
            )

    @mapped
    def item(self, item_id: str) -> tuple[Item, Path] | None:
        """The newest snapshot of an item and the directory its relative image path is from."""
        row = self.db.conn.execute(
            "SELECT items.json, datasets.base_dir FROM items "
            "LEFT JOIN datasets ON datasets.sha256 = items.dataset_sha256 "
            "WHERE items.id = :id ORDER BY items.rowid DESC LIMIT 1",
            {"id": item_id},
        ).fetchone()
        if row is None:
            return None
        return Item.model_validate_json(row["json"]), Path(row["base_dir"] or self.db.run_dir)

    @mapped
    def newest_dataset(self) -> tuple[Path, list[Item]] | None:
        """The folder and items of the dataset recorded last (the one a study used last; a
        snapshot replaces its `datasets` row), or None when none is recorded."""
        row = self.db.conn.execute(
            "SELECT sha256, base_dir FROM datasets ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        folder = Path(row["base_dir"] or self.db.run_dir)
        return folder, list(self.items(row["sha256"]).values())

    @mapped
    def items(self, dataset_sha256: str) -> dict[str, Item]:
        rows = self.db.conn.execute(
            "SELECT json FROM items WHERE dataset_sha256 = :dataset", {"dataset": dataset_sha256}
        )
        items = (Item.model_validate_json(r["json"]) for r in rows)
        return {item.id: item for item in items}

    # --- study runs -----------------------------------------------------------------------
    @mapped
    def start_run(self, provenance: dict[str, Any]) -> int:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                insert_sql("study_runs", ("started_at", "provenance")),
                {"started_at": now(), "provenance": _json(provenance)},
            )
        return int(cursor.lastrowid or 0)

    @mapped
    def finish_run(self, run_id: int, provenance: dict[str, Any] | None = None) -> None:
        """Mark a run finished, with its final provenance (e.g. the adapter trained meanwhile)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE study_runs SET finished_at = :now WHERE id = :id",
                {"now": now(), "id": run_id},
            )
            if provenance is not None:
                conn.execute(
                    "UPDATE study_runs SET provenance = :provenance WHERE id = :id",
                    {"provenance": _json(provenance), "id": run_id},
                )

    @mapped
    def add_run_generations(self, run_id: int, keys: Iterable[str]) -> None:
        """Record which responses a study run reported on (so reports can be rebuilt)."""
        with self.db.transaction() as conn:
            conn.executemany(
                insert_sql("run_generations", ("run_id", "generation_key"), "INSERT OR IGNORE"),
                [{"run_id": run_id, "generation_key": k} for k in keys],
            )

    @mapped
    def latest_run(self) -> tuple[int, dict[str, Any]] | None:
        """The newest finished study run and its provenance."""
        row = self.db.conn.execute(
            "SELECT id, provenance FROM study_runs WHERE finished_at IS NOT NULL "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row["id"]), json.loads(row["provenance"]))

    @mapped
    def unfinished_runs(self, after: int = 0) -> list[tuple[int, str]]:
        """(id, started_at) of the study runs newer than run `after` that never finished: killed,
        failed, or still running (their finished_at is NULL)."""
        rows = self.db.conn.execute(
            "SELECT id, started_at FROM study_runs WHERE finished_at IS NULL AND id > :after "
            "ORDER BY id",
            {"after": after},
        )
        return [(int(r["id"]), str(r["started_at"])) for r in rows]

    @mapped
    def run_generation_keys(self, run_id: int) -> list[str]:
        rows = self.db.conn.execute(
            "SELECT generation_key FROM run_generations WHERE run_id = :id ORDER BY rowid",
            {"id": run_id},
        )
        return [r["generation_key"] for r in rows]

    # --- finetuning ----------------------------------------------------------------------
    @mapped
    def record_finetune(self, card: dict[str, Any]) -> None:
        """Per-epoch loss of an adapter (from its card), for the report."""
        stamp = now()
        rows = [
            {
                "adapter_hash": card["adapter_hash"],
                "epoch": e["epoch"],
                "loss": e["loss"],
                "seconds": e.get("seconds"),
                "created_at": stamp,
            }
            for e in card.get("epoch_losses", [])
        ]
        columns = ("adapter_hash", "epoch", "loss", "seconds", "created_at")
        with self.db.transaction() as conn:
            conn.executemany(insert_sql("finetune_epochs", columns, "INSERT OR REPLACE"), rows)
