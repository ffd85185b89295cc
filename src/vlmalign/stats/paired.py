"""Two conditions compared on the same items: exact McNemar with Newcombe's interval, a paired
bootstrap over items, and Holm's correction for a family of tests."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats

from vlmalign.stats.common import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Interval,
    Outcome,
    OutcomesByItem,
    bootstrap,
    check_confidence,
    is_aligned,
    item_totals,
    pooled_rate,
    required,
    square_and_add,
)
from vlmalign.stats.proportions import wilson_interval

ComparisonMethod = Literal["mcnemar-exact", "paired-bootstrap"]


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on a paired 2×2 table (A's outcome × B's outcome, one per item).

    `a_only_aligned`: items where A is aligned and B is not; `b_only_aligned`: the reverse.
    Only these discordant items carry evidence of a difference.
    """

    n_items: int
    both_aligned: int
    a_only_aligned: int
    b_only_aligned: int
    neither_aligned: int
    p_value: float


def mcnemar_exact(a: Sequence[Outcome], b: Sequence[Outcome]) -> McNemarResult:
    """Exact (conditional) McNemar test of A vs B on paired binary outcomes (McNemar 1947).

    `a[i]` and `b[i]` are the outcomes of the same item under conditions A and B; unclear counts
    as not aligned. Under H0 each discordant item is equally likely to favour A or B, so the
    two-sided p-value is the exact binomial test of `b_only_aligned` successes in `a_only_aligned
    + b_only_aligned` trials with p = 0.5 (`scipy.stats.binomtest`); p = 1 when no item is
    discordant.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(a)} vs {len(b)}")
    table: Counter[tuple[bool, bool]] = Counter(
        (is_aligned(x), is_aligned(y)) for x, y in zip(a, b, strict=True)
    )
    a_only, b_only = table[(True, False)], table[(False, True)]
    discordant = a_only + b_only
    p_value = float(scipy_stats.binomtest(b_only, discordant, 0.5).pvalue) if discordant else 1.0
    return McNemarResult(
        n_items=len(a),
        both_aligned=table[(True, True)],
        a_only_aligned=a_only,
        b_only_aligned=b_only,
        neither_aligned=table[(False, False)],
        p_value=min(1.0, p_value),
    )


def newcombe_paired_interval(
    table: McNemarResult, confidence: float = DEFAULT_CONFIDENCE
) -> Interval | None:
    """Interval for the paired difference of proportions B − A, Newcombe's method 10 (1998).

    Newcombe, "Improved confidence intervals for the difference between binomial proportions
    based on paired data", Stat Med 17:2635. It combines the Wilson intervals of the two
    marginal rates ("square-and-add") with a correction for their correlation: phi of the 2×2
    table, with its numerator AD − BC shrunk by N/2 towards 0 when positive (0 when it is
    within N/2). It has good coverage for small n, unlike the Wald interval. None when n = 0.
    """
    n = table.n_items
    if n == 0:
        return None
    aligned_a = table.both_aligned + table.a_only_aligned
    aligned_b = table.both_aligned + table.b_only_aligned
    rate_a, rate_b = aligned_a / n, aligned_b / n
    low_a, high_a = required(wilson_interval(aligned_a, n, confidence))
    low_b, high_b = required(wilson_interval(aligned_b, n, confidence))
    phi = _newcombe_phi(table)
    difference = rate_b - rate_a
    below = square_and_add(rate_b - low_b, high_a - rate_a, phi)
    above = square_and_add(high_b - rate_b, rate_a - low_a, phi)
    return max(-1.0, difference - below), min(1.0, difference + above)


@dataclass(frozen=True)
class BootstrapComparison:
    """Difference of pooled accuracies B − A over shared items, with a paired bootstrap."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    resamples: int
    confidence: float


def paired_bootstrap(
    a_by_item: OutcomesByItem,
    b_by_item: OutcomesByItem,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> BootstrapComparison | None:
    """Paired cluster bootstrap of accuracy(B) − accuracy(A) on the items both conditions have.

    Each resample draws items with replacement and takes the *same* items for A and B, keeping
    all samples of each (so the pairing and the within-item correlation are both respected); the
    statistic is the difference of pooled accuracies. Interval: percentile. Two-sided p-value:
    the smaller share of resampled differences on one side of 0 (a difference of exactly 0
    counts on both sides), doubled and capped at 1, with the usual (r + 1) / (B + 1) correction
    for Monte Carlo p-values (Davison & Hinkley 1997; North et al. 2002):
    p = min(1, 2 · (1 + min(#{d* ≤ 0}, #{d* ≥ 0})) / (B + 1)). It inverts the percentile
    interval, so "p < 1 − confidence" and "interval excludes 0" agree up to the discreteness of
    the resamples; it is never below 2 / (B + 1). Identical conditions give difference 0, p = 1.

    Items present in only one condition (or without responses in either) are dropped. Returns
    None when fewer than two items remain.
    """
    check_confidence(confidence)
    shared = _shared_items(a_by_item, b_by_item)
    if len(shared) < 2:
        return None
    a_aligned, a_responses = item_totals({item: a_by_item[item] for item in shared})
    b_aligned, b_responses = item_totals({item: b_by_item[item] for item in shared})
    data = (a_aligned, a_responses, b_aligned, b_responses)
    result = bootstrap(data, _pooled_difference, confidence, resamples, seed)
    low, high = result.confidence_interval
    difference = float(_pooled_difference(*data))
    return BootstrapComparison(
        difference=difference,
        ci_low=float(low),
        ci_high=float(high),
        p_value=_bootstrap_p_value(result.bootstrap_distribution),
        n_items=len(shared),
        resamples=resamples,
        confidence=confidence,
    )


@dataclass(frozen=True)
class PairedComparison:
    """Condition B against condition A on the items they share (difference = B − A).

    `method` is "mcnemar-exact" (one sample per item in both; interval by Newcombe's method 10)
    or "paired-bootstrap". The discordant counts are set only for McNemar. `dropped_items`
    counts items judged in only one of the two conditions.
    """

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: ComparisonMethod
    n_items: int
    accuracy_a: float
    accuracy_b: float
    dropped_items: int
    confidence: float
    a_only_aligned: int | None = None
    b_only_aligned: int | None = None


def compare_paired(
    a_by_item: OutcomesByItem,
    b_by_item: OutcomesByItem,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedComparison | None:
    """Compare condition B with A on the same items; the test is chosen from the sample counts.

    Exact McNemar (with Newcombe's interval) when every shared item has exactly one sample in
    both conditions, else `paired_bootstrap`. Items present in only one condition are dropped
    (a paired test needs both outcomes) and counted in `dropped_items`. Returns None when there
    is nothing to compare (no shared item; for the bootstrap, fewer than two).
    """
    shared = _shared_items(a_by_item, b_by_item)
    judged = {item for item, s in a_by_item.items() if s} | {
        item for item, s in b_by_item.items() if s
    }
    dropped = len(judged) - len(shared)
    if not shared:
        return None
    a_rate = _pooled_accuracy(a_by_item, shared)
    b_rate = _pooled_accuracy(b_by_item, shared)
    if all(len(a_by_item[item]) == 1 and len(b_by_item[item]) == 1 for item in shared):
        table = mcnemar_exact([a_by_item[i][0] for i in shared], [b_by_item[i][0] for i in shared])
        low, high = required(newcombe_paired_interval(table, confidence))
        return PairedComparison(
            difference=b_rate - a_rate,
            ci_low=low,
            ci_high=high,
            p_value=table.p_value,
            method="mcnemar-exact",
            n_items=len(shared),
            accuracy_a=a_rate,
            accuracy_b=b_rate,
            dropped_items=dropped,
            confidence=confidence,
            a_only_aligned=table.a_only_aligned,
            b_only_aligned=table.b_only_aligned,
        )
    boot = paired_bootstrap(a_by_item, b_by_item, confidence, resamples, seed)
    if boot is None:
        return None
    return PairedComparison(
        difference=boot.difference,
        ci_low=boot.ci_low,
        ci_high=boot.ci_high,
        p_value=boot.p_value,
        method="paired-bootstrap",
        n_items=boot.n_items,
        accuracy_a=a_rate,
        accuracy_b=b_rate,
        dropped_items=dropped,
        confidence=confidence,
    )


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979) for a family of tests reported together.

    Sort ascending, multiply the k-th smallest (k from 0) by (m − k), carry the running maximum
    so adjusted values keep the order of the raw ones, cap at 1; returned in the input order.
    Controls the family-wise error rate under any dependence, and is uniformly more powerful
    than Bonferroni.
    """
    raw = np.asarray(p_values, dtype=float)
    if raw.size == 0:
        return []
    if np.any(np.isnan(raw)) or np.any((raw < 0) | (raw > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {list(p_values)}")
    order = np.argsort(raw, kind="stable")
    multipliers = raw.size - np.arange(raw.size)
    stepped = np.minimum(1.0, np.maximum.accumulate(raw[order] * multipliers))
    adjusted = np.empty_like(stepped)
    adjusted[order] = stepped
    return [float(p) for p in adjusted]


def _pooled_difference(
    a_aligned: NDArray[Any],
    a_responses: NDArray[Any],
    b_aligned: NDArray[Any],
    b_responses: NDArray[Any],
    axis: int = -1,
) -> Any:
    return pooled_rate(b_aligned, b_responses, axis) - pooled_rate(a_aligned, a_responses, axis)


def _bootstrap_p_value(differences: NDArray[np.float64]) -> float:
    resamples = differences.size
    at_or_below = int(np.sum(differences <= 0))
    at_or_above = int(np.sum(differences >= 0))
    tail = min(at_or_below, at_or_above) + 1
    return min(1.0, 2 * tail / (resamples + 1))


def _shared_items(a_by_item: OutcomesByItem, b_by_item: OutcomesByItem) -> list[str]:
    """Items with responses in both conditions, in A's order."""
    return [item for item, samples in a_by_item.items() if samples and b_by_item.get(item)]


def _pooled_accuracy(outcomes_by_item: OutcomesByItem, items: Sequence[str]) -> float:
    flat = [outcome for item in items for outcome in outcomes_by_item[item]]
    return sum(1 for outcome in flat if is_aligned(outcome)) / len(flat)


def _newcombe_phi(table: McNemarResult) -> float:
    """Correlation of the paired table, with Newcombe's shrinkage of a positive AD − BC by N/2."""
    a, b = table.both_aligned, table.a_only_aligned
    c, d = table.b_only_aligned, table.neither_aligned
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return 0.0
    cross = a * d - b * c
    n = table.n_items
    if cross > n / 2:
        cross_corrected = cross - n / 2
    elif cross >= 0:
        cross_corrected = 0.0
    else:
        cross_corrected = float(cross)
    return cross_corrected / math.sqrt(margins)
