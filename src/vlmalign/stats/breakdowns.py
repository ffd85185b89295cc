"""How a condition's answers look whatever their alignment: yes rate, unclear rate, and how
consistently an item's samples agree."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from vlmalign.stats.common import DEFAULT_CONFIDENCE, OutcomesByItem
from vlmalign.stats.proportions import Proportion, proportion

STANCES = ("yes", "no", "unclear")  # the stance judge's labels (judges/stance.py)


def yes_rate(stances: Iterable[str | None], confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    """Share of "yes" among the yes/no stances, whatever the aligned stance (Wilson interval).

    Shows a model's bias to agree. Unclear stances (and None) are left out of the denominator.
    Responses are treated as independent: with several samples per item read it as descriptive.
    """
    counts = Counter(_check_stance(s) for s in stances)
    return proportion(counts["yes"], counts["yes"] + counts["no"], confidence)


def unclear_rate(
    verdicts: Iterable[bool | str | None], confidence: float = DEFAULT_CONFIDENCE
) -> Proportion:
    """Share of unclear responses among all: outcome None, or stance "unclear" (Wilson interval)."""
    flags = [_is_unclear(v) for v in verdicts]
    return proportion(sum(flags), len(flags), confidence)


@dataclass(frozen=True)
class ItemConsistency:
    """How often the samples of an item agree: per item and the unweighted mean over items.

    Only items with at least two samples are included (one sample is trivially consistent).
    """

    per_item: dict[str, float]
    mean: float | None
    items: int


def item_consistency(outcomes_by_item: OutcomesByItem) -> ItemConsistency:
    """Per item, the share of its samples that agree with the item's most frequent outcome.

    The three outcomes (aligned, not aligned, unclear) are distinct here: a model that answers
    clearly once and evasively once is inconsistent. Ties do not matter (the share is the same
    whichever tied outcome is taken as the majority). 1.0 = every sample agrees; the floor is
    1/3 with three samples spread over the three outcomes.
    """
    per_item = {
        item: max(Counter(samples).values()) / len(samples)
        for item, samples in outcomes_by_item.items()
        if len(samples) >= 2
    }
    mean = sum(per_item.values()) / len(per_item) if per_item else None
    return ItemConsistency(per_item, mean, len(per_item))


def _check_stance(stance: str | None) -> str | None:
    if stance is not None and stance not in STANCES:
        raise ValueError(f"unknown stance {stance!r}; expected one of {', '.join(STANCES)}")
    return stance


def _is_unclear(verdict: bool | str | None) -> bool:
    if isinstance(verdict, str):
        return _check_stance(verdict) == "unclear"
    return verdict is None
