"""A run's conditions: which model variant answered, on which split, with how many shots.

`ConditionKey` is the one key every part of the report groups by, labels and sorts with (tables,
plot, comparisons, item cards, the console), so a condition reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

#: Model variants in report order; any other variant sorts after these.
VARIANTS = ("base", "finetuned")


class _Generated(Protocol):
    @property
    def variant(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def shots(self) -> int: ...


class ConditionKey(NamedTuple):
    """(model variant, split, shots); a plain tuple wherever it is stored or written as JSON."""

    model: str  # the model variant: base | finetuned
    split: str
    shots: int

    @classmethod
    def of(cls, row: _Generated) -> ConditionKey:
        """The condition a stored response was generated under."""
        return cls(row.variant, row.split, row.shots)

    @property
    def column(self) -> str:
        """Shots and split, for a table whose rows already say the model: "1-shot train"."""
        return f"{self.shots}-shot {self.split}"

    @property
    def label(self) -> str:
        """The whole condition: "base 1-shot train"."""
        return f"{self.model} {self.column}"

    @property
    def tick(self) -> str:
        """The label on three lines, for a plot's axis."""
        return "\n".join((self.model, f"{self.shots}-shot", self.split))

    def sort_key(self) -> tuple[int, str, bool, str, int]:
        """Base before finetuned, train before other splits, then by shots."""
        rank = VARIANTS.index(self.model) if self.model in VARIANTS else len(VARIANTS)
        return (rank, self.model, self.split != "train", self.split, self.shots)


def sorted_conditions(conditions: Iterable[tuple[str, str, int]]) -> list[ConditionKey]:
    """Distinct conditions in report order."""
    keys = {ConditionKey(*condition) for condition in conditions}
    return sorted(keys, key=ConditionKey.sort_key)
