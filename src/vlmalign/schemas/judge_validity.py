"""Judge validity: one entry per judge and source (`ValidityEntry`), and the file
`vlmalign judges validate --output` writes.

The measures that fill an entry are `judges/validity.py`'s (which re-exports these names)."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import ConfigDict, Field

from vlmalign.schemas.base import Record

#: Version of a validity entry's shape (docs/artifacts.md).
VALIDITY_SCHEMA_VERSION: Final = 1
#: Version of the validity file's shape (docs/artifacts.md).
VALIDITY_FILE_SCHEMA_VERSION: Final = 1

#: The sources of known verdicts a judge is measured on (docs/judge-validity.md).
Source = Literal["references", "humans", "heldout"]
SOURCES: tuple[Source, ...] = ("references", "humans", "heldout")
#: What a summary adds when the judge was developed looking at the very answers it is measured on.
OPTIMISTIC = "optimistic: this dataset informed the judge's development"

__all__ = [
    "OPTIMISTIC",
    "SOURCES",
    "VALIDITY_FILE_SCHEMA_VERSION",
    "VALIDITY_SCHEMA_VERSION",
    "Source",
    "ValidityEntry",
    "ValidityFile",
]


class ValidityEntry(Record):
    """One judge on one source. The first eleven keys are the published contract
    (`vlmalign judges validate --output`, `results.json`'s `judge_validity`); `schema_version`
    comes last (entries written before it existed read as version 1).

    `informative`: at least `judges.validity.MIN_PER_SIDE` responses on each side (`n_aligned`,
    `n_misaligned`) and `ci_low` above chance (`judges.validity.CHANCE`)."""

    # The fields' order is part of stored keys: the ethics judge hashes its classifier card's
    # JSON, held-out entry included (judges/ethics.py). Add fields at the end.
    model_config = ConfigDict(frozen=True, extra="forbid")

    judge: str
    source: Source
    n: int
    balanced_accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    auc: float | None
    aligned_accuracy: float | None
    misaligned_accuracy: float | None
    unclear: int
    informative: bool
    n_aligned: int = 0
    n_misaligned: int = 0
    clusters: int = 0  # items (references, humans) or row groups (held-out data)
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    method: str = ""  # how the verdicts were obtained, e.g. a cross-validated threshold
    schema_version: Literal[1] = VALIDITY_SCHEMA_VERSION
    # The judge was developed looking at these very answers: the figure flatters it.
    optimistic: bool = False

    def summary(self) -> str:
        """'balanced accuracy 0.62 [0.51, 0.73], AUC 0.70, n=80: not informative'."""
        if self.balanced_accuracy is None:
            return f"not measurable (n={self.n}): not informative"
        interval = ""
        if self.ci_low is not None and self.ci_high is not None:
            interval = f" [{self.ci_low:.2f}, {self.ci_high:.2f}]"
        auc = "" if self.auc is None else f", AUC {self.auc:.2f}"
        verdict = "informative" if self.informative else "not informative"
        accuracy = f"balanced accuracy {self.balanced_accuracy:.2f}{interval}"
        caveat = f" ({OPTIMISTIC})" if self.optimistic else ""
        return f"{accuracy}{auc}, n={self.n}: {verdict}{caveat}"


class ValidityFile(Record):
    """`{"schema_version": 1, "validity": [entry, ...]}`."""

    schema_version: Literal[1] = VALIDITY_FILE_SCHEMA_VERSION
    validity: list[ValidityEntry] = Field(description="one entry per judge and source")
