"""The run store: one SQLite file per run directory (dataset snapshot, responses, verdicts,
human labels, study runs).

`RunStore` is the one object callers use. Inside: `connection.py` opens the file and maps
failures to one-line errors, `schema.py` holds the migration steps, and each table group has
its module (`runs.py`, `generations.py`, `labels.py`); `check.py` is `vlmalign store check`.
"""

from vlmalign.store.connection import STORE_FILE, now, store_error, store_problem
from vlmalign.store.generations import (
    GenerationRow,
    JudgmentRow,
    ReferenceJudgmentRow,
    StoredVerdict,
    generation_key,
)
from vlmalign.store.labels import LABELS, LabelRow
from vlmalign.store.run_store import RunStore
from vlmalign.store.schema import SCHEMA_VERSION

__all__ = [
    "LABELS",
    "SCHEMA_VERSION",
    "STORE_FILE",
    "GenerationRow",
    "JudgmentRow",
    "LabelRow",
    "ReferenceJudgmentRow",
    "RunStore",
    "StoredVerdict",
    "generation_key",
    "now",
    "store_error",
    "store_problem",
]
