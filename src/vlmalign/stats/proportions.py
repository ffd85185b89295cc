"""A share with its interval: Wilson for independent responses, a bootstrap over items for
several samples per item (the accuracy of one condition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scipy import stats as scipy_stats

from vlmalign.stats.common import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Interval,
    OutcomesByItem,
    bootstrap,
    check_confidence,
    clip_unit,
    is_aligned,
    item_totals,
    pooled_rate,
)

AccuracyMethod = Literal["wilson", "cluster-bootstrap"]


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> Interval | None:
    """Wilson score interval for a binomial proportion (Wilson 1927), via scipy's `binomtest`.

    Returns ``(low, high)`` within [0, 1], or ``None`` when ``n == 0`` (no data, no interval).
    Wilson keeps good coverage for small n and proportions near 0 or 1, where the Wald interval
    collapses.
    """
    check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None
    ci = scipy_stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return clip_unit(float(ci.low)), clip_unit(float(ci.high))


@dataclass(frozen=True)
class Proportion:
    """`count` of `n` with a Wilson interval; `rate` and the interval are None when n == 0."""

    rate: float | None
    count: int
    n: int
    ci_low: float | None
    ci_high: float | None
    confidence: float


def proportion(count: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    """A share with its Wilson interval (responses treated as independent)."""
    interval = wilson_interval(count, n, confidence)
    low, high = interval if interval else (None, None)
    return Proportion(count / n if n else None, count, n, low, high, confidence)


def cluster_bootstrap_interval(
    outcomes_by_item: OutcomesByItem,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Percentile interval of the accuracy over all responses, resampling items with replacement.

    The cluster (item-level) bootstrap: each resample draws as many items as there are, with
    replacement, and keeps all samples of each drawn item, so the correlation between samples of
    one item widens the interval as it should. The statistic is the pooled accuracy (aligned /
    responses) of the resample. Runs on `scipy.stats.bootstrap` (paired over per-item totals,
    vectorised, seeded so the same input and seed give the same interval).

    Percentile rather than BCa: it stays within [0, 1], is transformation-respecting, and does
    not depend on a jackknife acceleration estimate that is noisy with 10–40 items (and undefined
    when every item has the same accuracy).

    Returns None when fewer than two items have responses: one item cannot show the variation
    between items. Limitation: when every item has the same accuracy (e.g. all aligned), every
    resample is identical and the interval collapses to that value; report the item count.
    """
    check_confidence(confidence)
    aligned, responses = item_totals(outcomes_by_item)
    if len(aligned) < 2:
        return None
    result = bootstrap((aligned, responses), pooled_rate, confidence, resamples, seed)
    low, high = result.confidence_interval
    return clip_unit(float(low)), clip_unit(float(high))


@dataclass(frozen=True)
class AccuracyEstimate:
    """Accuracy of one condition with its interval.

    `successes` counts aligned responses; `unclear` counts responses judged unclear (they are in
    `n`, not in `successes`). `samples_per_item` is the largest number of samples of any item.
    `method` names the interval: Wilson when every item has exactly one sample, else the cluster
    bootstrap over items. `accuracy` and the interval are None when there is no response.
    """

    accuracy: float | None
    n: int
    successes: int
    unclear: int
    items: int
    samples_per_item: int
    ci_low: float | None
    ci_high: float | None
    method: AccuracyMethod
    confidence: float


def accuracy_estimate(
    outcomes_by_item: OutcomesByItem,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> AccuracyEstimate:
    """Accuracy (aligned / all responses; unclear counts in n as not aligned) with its interval.

    Items with no response are ignored. With exactly one sample per item the responses are
    independent and the Wilson interval applies; otherwise `cluster_bootstrap_interval`.
    """
    judged = {item: samples for item, samples in outcomes_by_item.items() if samples}
    flat = [outcome for samples in judged.values() for outcome in samples]
    successes = sum(1 for outcome in flat if is_aligned(outcome))
    unclear = sum(1 for outcome in flat if outcome is None)
    n = len(flat)
    one_sample_each = all(len(samples) == 1 for samples in judged.values())
    if one_sample_each:
        interval = wilson_interval(successes, n, confidence)
    else:
        interval = cluster_bootstrap_interval(judged, confidence, resamples, seed)
    low, high = interval if interval else (None, None)
    return AccuracyEstimate(
        accuracy=successes / n if n else None,
        n=n,
        successes=successes,
        unclear=unclear,
        items=len(judged),
        samples_per_item=max((len(s) for s in judged.values()), default=0),
        ci_low=low,
        ci_high=high,
        method="wilson" if one_sample_each else "cluster-bootstrap",
        confidence=confidence,
    )
