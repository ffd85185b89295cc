"""ETHICS commonsense data for the `ethics` judge: reading the CSVs and splitting them honestly.

Data: Dan Hendrycks, Collin Burns, Steven Basart, Andrew Critch, Jerry Li, Dawn Song and Jacob
Steinhardt, "Aligning AI With Shared Human Values", ICLR 2021 (arXiv:2008.02275), MIT license.
The CSVs are read from `../shared/data/ethics/commonsense`, never copied into this repository.

Split (fixed; docs/judges-ethics.md): only the short rows (`is_short == True`) of `cm_test.csv`
and `cm_test_hard.csv` (`cm_train.csv` is not available offline). The last 20% of each file's
short rows is its held-out block; the 10% of short rows before it is the validation block (to
pick the epoch and the decision cut); the rest is training. Adjacent rows are often minimal pairs
("I helped ..." / "I tossed ..."), so block starts move forward past a pair: no pair straddles a
boundary.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

DATA_FILES: tuple[str, ...] = ("cm_test.csv", "cm_test_hard.csv")
HELDOUT_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
#: Adjacent rows whose lower-cased word sequences have a difflib ratio at least this high are a
#: minimal pair (two rows at most), never put on different sides of a boundary.
PAIR_SIMILARITY = 0.45
CITATION = (
    "Dan Hendrycks, Collin Burns, Steven Basart, Andrew Critch, Jerry Li, Dawn Song and "
    'Jacob Steinhardt. "Aligning AI With Shared Human Values". ICLR 2021. arXiv:2008.02275.'
)


class EthicsRow(NamedTuple):
    label: int  # 1 = morally wrong
    text: str
    is_short: bool


def read_ethics_csv(path: Path) -> list[EthicsRow]:
    """Rows of an ETHICS commonsense CSV (columns label, input, is_short, edited)."""
    rows: list[EthicsRow] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"label", "input", "is_short"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for i, r in enumerate(reader, start=2):
            if r["label"] not in ("0", "1") or r["is_short"] not in ("True", "False"):
                raise ValueError(f"{path}:{i}: bad label/is_short {r['label']!r}/{r['is_short']!r}")
            rows.append(EthicsRow(int(r["label"]), r["input"], r["is_short"] == "True"))
    return rows


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pair_similarity(a: str, b: str) -> float:
    """difflib ratio of the two texts' lower-cased word sequences (1.0 = identical)."""
    matcher = difflib.SequenceMatcher(None, a.lower().split(), b.lower().split(), autojunk=False)
    return matcher.ratio()


def minimal_pair_groups(texts: Sequence[str], threshold: float = PAIR_SIMILARITY) -> np.ndarray:
    """A group id per row, in order: a row joins the previous row's group when that group has one
    row so far and the two texts are at least `threshold` similar (so groups are pairs at most)."""
    groups = np.zeros(len(texts), dtype=np.int64)
    size = 1
    for i in range(1, len(texts)):
        if size == 1 and pair_similarity(texts[i - 1], texts[i]) >= threshold:
            groups[i] = groups[i - 1]
            size = 2
        else:
            groups[i] = groups[i - 1] + 1
            size = 1
    return groups


def snap_to_group_start(groups: np.ndarray, i: int) -> int:
    """The first position >= i that starts a group (or len(groups)): splits no pair."""
    n = len(groups)
    i = max(0, min(int(i), n))
    while 0 < i < n and groups[i] == groups[i - 1]:
        i += 1
    return i


@dataclass(frozen=True)
class FileSplit:
    """One file's short rows: training rows, then a validation block, then a held-out block."""

    name: str
    rows: list[EthicsRow]
    groups: np.ndarray  # minimal-pair group per row
    validation_start: int
    heldout_start: int

    @property
    def train(self) -> list[EthicsRow]:
        return self.rows[: self.validation_start]

    @property
    def validation(self) -> list[EthicsRow]:
        return self.rows[self.validation_start : self.heldout_start]

    @property
    def heldout(self) -> list[EthicsRow]:
        return self.rows[self.heldout_start :]

    def heldout_groups(self) -> list[str]:
        """A cluster id per held-out row: the two rows of a minimal pair are not independent."""
        return [f"{self.name}:{g}" for g in self.groups[self.heldout_start :]]


def split_file(name: str, rows: Sequence[EthicsRow]) -> FileSplit:
    """Keep a file's short rows and find where its validation and held-out blocks start."""
    short = [r for r in rows if r.is_short]
    groups = minimal_pair_groups([r.text for r in short])
    n = len(short)
    heldout = snap_to_group_start(groups, n - round(HELDOUT_FRACTION * n))
    validation = snap_to_group_start(groups, heldout - round(VALIDATION_FRACTION * n))
    if not 0 < validation < heldout < n:
        raise ValueError(f"{name}: too few short rows ({n}) to split")
    return FileSplit(name, short, groups, validation, heldout)


def everyday_rows() -> list[EthicsRow]:
    """The hand-written everyday scenarios (`judges.ethics_everyday`), as training rows only."""
    from vlmalign.judges.ethics_everyday import NOT_WRONG, WRONG

    return [EthicsRow(1, text, True) for text in WRONG] + [
        EthicsRow(0, text, True) for text in NOT_WRONG
    ]


def load_splits(data_dir: Path) -> tuple[list[FileSplit], dict[str, str]]:
    """Every data file's split and sha256; a clear error when the data is missing."""
    missing = [name for name in DATA_FILES if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{data_dir}: missing {', '.join(missing)} (the ETHICS commonsense CSVs)"
        )
    splits = [split_file(name, read_ethics_csv(data_dir / name)) for name in DATA_FILES]
    hashes = {name: sha256_file(data_dir / name) for name in DATA_FILES}
    return splits, hashes
