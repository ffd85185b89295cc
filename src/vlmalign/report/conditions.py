"""A run's conditions: which model variant answered, on which split, with how many shots.

`ConditionKey` is the one key every part of the report groups by, labels and sorts with (tables,
plot, comparisons, item cards, the console), so a condition reads the same everywhere. It is
defined with the result records that carry it (`schemas/results.py`) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable

from vlmalign.schemas.results import VARIANTS, ConditionKey

__all__ = ["VARIANTS", "ConditionKey", "sorted_conditions"]


def sorted_conditions(conditions: Iterable[tuple[str, str, int]]) -> list[ConditionKey]:
    """Distinct conditions in report order."""
    keys = {ConditionKey(*condition) for condition in conditions}
    return sorted(keys, key=ConditionKey.sort_key)
