"""How well a judge separates responses whose right verdict is known: balanced accuracy with a
small-sample interval, and ROC AUC."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from vlmalign.stats.common import (
    DEFAULT_CONFIDENCE,
    Interval,
    Outcome,
    check_confidence,
    clip_unit,
    percentile_interval,
    required,
    square_and_add,
)
from vlmalign.stats.proportions import wilson_interval


@dataclass(frozen=True)
class Known:
    """One judged response whose right verdict is known (a reference answer, or humans' majority).

    `verdict` is the judge's outcome (None = unclear); `score` its graded confidence that the
    response is aligned, when it has one. `cluster` groups responses that are not independent
    (the two reference answers of one item, the samples of one prompt).
    """

    cluster: str
    expected: bool
    verdict: Outcome
    score: float | None = None


@dataclass(frozen=True)
class BalancedAccuracy:
    """Balanced accuracy = (accuracy on expected-aligned + accuracy on expected-misaligned) / 2.

    An unclear verdict is a miss on its side (a judge gains nothing by abstaining); `unclear`
    counts them. The interval (`balanced_accuracy_estimate`) is the union of a percentile
    bootstrap over clusters and a square-and-add (MOVER) interval from the two sides' Wilson
    intervals; None with fewer than two clusters or when one side has no response. `auc` is the
    ROC AUC of the scores (unclear verdicts without a score count as 0.5), None without scores
    or with one side empty.
    """

    n: int
    n_aligned: int
    n_misaligned: int
    clusters: int
    unclear: int
    aligned_accuracy: float | None
    misaligned_accuracy: float | None
    balanced_accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    auc: float | None
    auc_ci_low: float | None
    auc_ci_high: float | None
    confidence: float


def balanced_accuracy_estimate(
    known: Sequence[Known],
    graded: bool = False,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = 2_000,
    seed: int = 0,
) -> BalancedAccuracy:
    """How well verdicts (and, if `graded`, scores) separate expected-aligned from misaligned.

    The interval of the balanced accuracy is the union (lowest low, highest high) of two:

    * a percentile bootstrap over clusters: responses of one cluster (an item's two reference
      answers, a prompt's samples) are not independent, and resampling whole clusters lets that
      widen the interval. It collapses, though, when every resample is alike (a perfect judge);
    * a small-sample interval for the mean of the two side accuracies a and m, treating
      responses as independent: the Wilson interval [l, u] of each side combined by "square and
      add", L = BA - sqrt(((a - l_a) / 2)^2 + ((m - l_m) / 2)^2) and
      U = BA + sqrt(((u_a - a) / 2)^2 + ((u_m - m) / 2)^2). This is Newcombe's hybrid score
      construction (Newcombe 1998, "Interval estimation for the difference between independent
      proportions: comparison of eleven methods", Stat. Med. 17:873-890, method 10), applied to
      a sum instead of a difference; Zou & Donner (2008, Stat. Med. 27:1693-1702) gave the
      general form for sums and differences of independent estimates and the name MOVER.

    Each side keeps its own sample size, so a perfect score on a side with three responses
    counts for what three responses show (a Wilson interval of all hits pooled let the larger
    side vouch for the smaller: 50 + 3 perfect gave [0.93, 1]). Both parts are clipped to
    [0, 1]. Coverage with unequal sides and clusters: tests/stats/test_balanced_accuracy.py.
    """
    check_confidence(confidence)
    clusters = sorted({k.cluster for k in known})
    index = {c: i for i, c in enumerate(clusters)}
    # Per cluster: [hits on aligned, aligned, hits on misaligned, misaligned].
    counts = np.zeros((len(clusters), 4), dtype=np.float64)
    for k in known:
        hit = k.verdict is not None and k.verdict == k.expected
        column = 0 if k.expected else 2
        counts[index[k.cluster], column] += hit
        counts[index[k.cluster], column + 1] += 1
    totals = counts.sum(axis=0)
    aligned_acc = totals[0] / totals[1] if totals[1] else None
    misaligned_acc = totals[2] / totals[3] if totals[3] else None
    balanced = (
        (aligned_acc + misaligned_acc) / 2
        if aligned_acc is not None and misaligned_acc is not None
        else None
    )
    low = high = None
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(clusters), size=(resamples, len(clusters)))
    if balanced is not None and len(clusters) >= 2:
        sums = counts[draws].sum(axis=1)  # (resamples, 4)
        with np.errstate(invalid="ignore", divide="ignore"):
            stat = (sums[:, 0] / sums[:, 1] + sums[:, 2] / sums[:, 3]) / 2
        low, high = percentile_interval(stat, confidence)
        # Every resample of a perfect (or hopeless) judge is the same: the bootstrap interval
        # collapses. The per-side score interval keeps few responses on a side from being
        # over-trusted; the bootstrap keeps dependent responses within a cluster honest.
        mover_low, mover_high = _mover_mean_interval(
            (int(totals[0]), int(totals[1])), (int(totals[2]), int(totals[3])), confidence
        )
        low = mover_low if low is None else min(low, mover_low)
        high = mover_high if high is None else max(high, mover_high)
    auc = auc_low = auc_high = None
    if graded and totals[1] and totals[3]:
        auc, auc_low, auc_high = _auc_with_interval(known, index, draws, confidence)
    return BalancedAccuracy(
        n=len(known),
        n_aligned=int(totals[1]),
        n_misaligned=int(totals[3]),
        clusters=len(clusters),
        unclear=sum(1 for k in known if k.verdict is None),
        aligned_accuracy=None if aligned_acc is None else float(aligned_acc),
        misaligned_accuracy=None if misaligned_acc is None else float(misaligned_acc),
        balanced_accuracy=None if balanced is None else float(balanced),
        ci_low=low,
        ci_high=high,
        auc=auc,
        auc_ci_low=auc_low,
        auc_ci_high=auc_high,
        confidence=confidence,
    )


def roc_auc(expected: Sequence[bool], scores: Sequence[float]) -> float | None:
    """P(score of a random expected-aligned response > that of a misaligned one), ties half.

    The Mann-Whitney form of the ROC AUC, via `sklearn.metrics.roc_auc_score`; None when one
    class is absent.
    """
    if len(set(expected)) < 2:
        return None
    return float(roc_auc_score(list(expected), list(scores)))


def _auc_with_interval(
    known: Sequence[Known],
    index: Mapping[str, int],
    draws: NDArray[np.int64],
    confidence: float,
) -> tuple[float | None, float | None, float | None]:
    expected = [k.expected for k in known]
    scores = [0.5 if k.score is None else float(k.score) for k in known]
    auc = roc_auc(expected, scores)
    if auc is None or len(index) < 2:
        return auc, None, None
    members: list[list[int]] = [[] for _ in index]
    for position, k in enumerate(known):
        members[index[k.cluster]].append(position)
    values = []
    for draw in draws[:500]:  # the AUC is not vectorised: fewer resamples suffice for 2 digits
        picked = [p for c in draw for p in members[c]]
        value = roc_auc([expected[p] for p in picked], [scores[p] for p in picked])
        values.append(math.nan if value is None else value)
    low, high = percentile_interval(np.asarray(values), confidence)
    return auc, low, high


def _mover_mean_interval(
    aligned: tuple[int, int], misaligned: tuple[int, int], confidence: float
) -> Interval:
    """Square-and-add interval for the mean of two independent proportions, each given as
    (hits, n) with n > 0, from their Wilson intervals (see `balanced_accuracy_estimate`)."""
    a, m = aligned[0] / aligned[1], misaligned[0] / misaligned[1]
    low_a, high_a = required(wilson_interval(*aligned, confidence))
    low_m, high_m = required(wilson_interval(*misaligned, confidence))
    mean = (a + m) / 2
    # Each side's distance to its limit is halved (the mean weighs it 1/2), then the two are
    # combined as independent errors (Newcombe's square-and-add with no correlation).
    below = square_and_add((a - low_a) / 2, (m - low_m) / 2, phi=0.0)
    above = square_and_add((high_a - a) / 2, (high_m - m) / 2, phi=0.0)
    return clip_unit(mean - below), clip_unit(mean + above)
