"""`RunStore`: one run directory's store, the one object callers use.

It opens the connection (`connection.py`) and hands each call to the table group that owns
the table (`runs.py`, `generations.py`, `labels.py`), all over that one connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vlmalign.data.dataset import Dataset
from vlmalign.data.schema import Item
from vlmalign.store.connection import StoreConnection
from vlmalign.store.generations import (
    GenerationRow,
    GenerationTables,
    JudgmentRow,
    ReferenceJudgmentRow,
)
from vlmalign.store.labels import LabelRow, LabelTables
from vlmalign.store.runs import RunTables


class RunStore:
    """SQLite access for one run directory.

    `read_only=True` opens an existing store without ever writing to it (for reports and
    exports; works in a read-only directory). A store of an older schema is migrated first,
    which needs write access once. `busy_timeout_s` is how long a write waits for another
    process's transaction (default `connection.BUSY_TIMEOUT_S`).
    """

    def __init__(
        self,
        run_dir: Path,
        check_same_thread: bool = True,
        read_only: bool = False,
        busy_timeout_s: float | None = None,
    ) -> None:
        self.db = StoreConnection(
            run_dir,
            read_only=read_only,
            check_same_thread=check_same_thread,
            busy_timeout_s=busy_timeout_s,
        )
        self._runs = RunTables(self.db)
        self._generations = GenerationTables(self.db)
        self._labels = LabelTables(self.db)

    @property
    def run_dir(self) -> Path:
        return self.db.run_dir

    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def read_only(self) -> bool:
        return self.db.read_only

    @property
    def conn(self) -> sqlite3.Connection:
        """The SQLite connection (for the store's own modules and for tests)."""
        return self.db.conn

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit everything in the block, or nothing."""
        with self.db.transaction() as conn:
            yield conn

    # --- dataset, runs, finetuning (runs.py) ----------------------------------------------
    def snapshot_dataset(self, dataset: Dataset) -> None:
        self._runs.snapshot_dataset(dataset)

    def item(self, item_id: str) -> tuple[Item, Path] | None:
        """The newest snapshot of an item and the directory its relative image path is from."""
        return self._runs.item(item_id)

    def items(self, dataset_sha256: str) -> dict[str, Item]:
        return self._runs.items(dataset_sha256)

    def start_run(self, provenance: dict[str, Any]) -> int:
        return self._runs.start_run(provenance)

    def finish_run(self, run_id: int, provenance: dict[str, Any] | None = None) -> None:
        """Mark a run finished, with its final provenance (e.g. the adapter trained meanwhile)."""
        self._runs.finish_run(run_id, provenance)

    def add_run_generations(self, run_id: int, keys: Iterable[str]) -> None:
        """Record which responses a study run reported on (so reports can be rebuilt)."""
        self._runs.add_run_generations(run_id, keys)

    def latest_run(self) -> tuple[int, dict[str, Any]] | None:
        """The newest finished study run and its provenance."""
        return self._runs.latest_run()

    def unfinished_runs(self, after: int = 0) -> list[tuple[int, str]]:
        """(id, started_at) of the study runs newer than run `after` that never finished."""
        return self._runs.unfinished_runs(after)

    def run_generation_keys(self, run_id: int) -> list[str]:
        return self._runs.run_generation_keys(run_id)

    def record_finetune(self, card: dict[str, Any]) -> None:
        """Per-epoch loss of an adapter (from its card), for the report."""
        self._runs.record_finetune(card)

    # --- responses and verdicts (generations.py) ------------------------------------------
    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        return self._generations.existing_keys(keys)

    def add_generations(self, rows: Sequence[GenerationRow]) -> None:
        self._generations.add_generations(rows)

    def generations(self, keys: Sequence[str]) -> list[GenerationRow]:
        """Rows for these keys, in the given order (missing keys are skipped)."""
        return self._generations.generations(keys)

    def all_generation_keys(self) -> list[str]:
        return self._generations.all_generation_keys()

    def add_judgments(self, rows: Sequence[JudgmentRow]) -> None:
        self._generations.add_judgments(rows)

    def judgments(
        self, judge: str, config_sha256: str, keys: Sequence[str]
    ) -> dict[str, JudgmentRow]:
        return self._generations.judgments(judge, config_sha256, keys)

    def judged_keys(self, judge: str, config_sha256: str, keys: Sequence[str]) -> set[str]:
        return self._generations.judged_keys(judge, config_sha256, keys)

    def add_reference_judgments(self, rows: Sequence[ReferenceJudgmentRow]) -> None:
        self._generations.add_reference_judgments(rows)

    def reference_judgments(
        self, dataset_sha256: str, judge: str, config_sha256: str
    ) -> dict[tuple[str, str], ReferenceJudgmentRow]:
        """(item id, side) -> verdict of this judge configuration on that reference answer."""
        return self._generations.reference_judgments(dataset_sha256, judge, config_sha256)

    # --- human labels (labels.py) ---------------------------------------------------------
    def annotator_seed(self, name: str, new_seed: int) -> int:
        """The order seed recorded for an annotator (recorded now, from `new_seed`, if new)."""
        return self._labels.annotator_seed(name, new_seed)

    def add_labels(self, rows: Sequence[LabelRow]) -> None:
        """Append labels in one transaction (earlier labels stay as revision history)."""
        self._labels.add_labels(rows)

    def add_label_once(self, row: LabelRow, window_s: float) -> bool:
        """Append one label unless it repeats the annotator's latest label of that response
        (same label and note, at most `window_s` seconds apart); True when stored. The check
        and the insert are one transaction, so concurrent repeats store one label."""
        return self._labels.add_label_once(row, window_s)

    def labels(self, latest_only: bool = True, after_id: int = 0) -> list[LabelRow]:
        """Labels in the order given (id above `after_id`): every revision, or only each
        annotator's latest label per response."""
        return self._labels.labels(latest_only, after_id)

    def label(self, label_id: int) -> LabelRow | None:
        """One stored label by its id."""
        return self._labels.label(label_id)
