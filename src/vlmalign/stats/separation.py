"""How well a judge separates responses whose right verdict is known: balanced accuracy with a
small-sample interval, and ROC AUC."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from vlmalign.stats.common import (
    DEFAULT_CONFIDENCE,
    Interval,
    Outcome,
    bootstrap,
    check_confidence,
    clip_unit,
    percentile_interval,
    required,
    square_and_add,
)
from vlmalign.stats.proportions import wilson_interval

#: Resamples drawn at a time: bounds the memory of one batch (resamples x responses) on large
#: sets; the balanced accuracy and the AUC use the same, so they resample the same clusters.
_BATCH = 500


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
    or with one side empty; its interval is the percentile one over the same cluster resamples
    (None with fewer than two clusters).
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
      widen the interval. It collapses, though, when every resample is alike (a perfect judge).
      It runs on `common.bootstrap` (paired over the per-cluster counts); a resample without
      one side has no balanced accuracy and is left out of the percentiles;
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
    if balanced is not None and len(clusters) >= 2:
        columns = tuple(counts[:, j] for j in range(4))
        stat = _cluster_bootstrap(columns, _balanced_of_sums, confidence, resamples, seed)
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
        auc, auc_low, auc_high = _auc_with_interval(known, index, confidence, resamples, seed)
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
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float | None, float | None, float | None]:
    """The ROC AUC and a percentile interval from the cluster bootstrap. With the same seed
    and number of clusters, `common.bootstrap` draws the same clusters as for the balanced
    accuracy. A resample with one side absent has no AUC and is left out of the percentiles."""
    expected = [k.expected for k in known]
    scores = [0.5 if k.score is None else float(k.score) for k in known]
    auc = roc_auc(expected, scores)
    if auc is None or len(index) < 2:
        return auc, None, None
    statistic = _ResampledAuc(
        np.asarray(scores, dtype=np.float64),
        np.asarray(expected, dtype=bool),
        np.array([index[k.cluster] for k in known], dtype=np.intp),
        len(index),
    )
    clusters = (np.arange(len(index), dtype=np.float64),)
    distribution = _cluster_bootstrap(clusters, statistic, confidence, resamples, seed)
    low, high = percentile_interval(distribution, confidence)
    return auc, low, high


def _cluster_bootstrap(
    data: tuple[NDArray[np.float64], ...],
    statistic: Any,
    confidence: float,
    resamples: int,
    seed: int,
) -> NDArray[np.float64]:
    """The resampled values of `statistic` over clusters (one row of each array in `data` a
    cluster, resampled together), from `common.bootstrap`. Its own interval is not used: a
    resample with one side absent gives nan, which `percentile_interval` leaves out, and a
    collapsed distribution is expected (a perfect judge), so scipy's warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(data, statistic, confidence, resamples, seed, batch=_BATCH)
    return np.asarray(result.bootstrap_distribution, dtype=np.float64)


def _balanced_of_sums(
    aligned_hits: NDArray[np.float64],
    aligned: NDArray[np.float64],
    misaligned_hits: NDArray[np.float64],
    misaligned: NDArray[np.float64],
    axis: int = -1,
) -> NDArray[np.float64]:
    """Balanced accuracy of per-cluster counts summed along `axis` (nan with a side absent)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        aligned_acc = aligned_hits.sum(axis=axis) / aligned.sum(axis=axis)
        misaligned_acc = misaligned_hits.sum(axis=axis) / misaligned.sum(axis=axis)
    return np.asarray((aligned_acc + misaligned_acc) / 2, dtype=np.float64)


class _ResampledAuc:
    """ROC AUC (Mann-Whitney, ties half) of cluster resamples, vectorised over resamples.

    Called with drawn cluster indices of shape (..., clusters); a response counts as often as
    its cluster was drawn. Responses are sorted by score once; per resample, the running sum of
    misaligned weights gives, for each aligned response, the weight of misaligned responses
    scored below it (`below`) and tied with it (`tied`): AUC = sum w (below + tied / 2) over
    aligned responses / (aligned weight x misaligned weight), nan when a side is absent.
    """

    def __init__(
        self,
        scores: NDArray[np.float64],
        expected: NDArray[np.bool_],
        cluster: NDArray[np.intp],
        clusters: int,
    ) -> None:
        order = np.argsort(scores, kind="stable")
        ranked = scores[order]
        self.cluster = cluster[order]
        self.negative = ~expected[order]
        positive = np.flatnonzero(expected[order])
        self.positive = positive
        # Responses tied with an aligned one sit at sorted positions [start, end).
        self.start = np.searchsorted(ranked, ranked[positive], side="left")
        self.end = np.searchsorted(ranked, ranked[positive], side="right")
        self.clusters = clusters

    def __call__(self, drawn: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
        picks = np.moveaxis(drawn, axis, -1).astype(np.intp)
        shape = picks.shape[:-1]
        rows = picks.reshape(-1, picks.shape[-1])
        offsets = self.clusters * np.arange(rows.shape[0])[:, None]
        times = np.bincount((rows + offsets).ravel(), minlength=rows.shape[0] * self.clusters)
        weight = times.reshape(rows.shape[0], self.clusters)[:, self.cluster].astype(np.float64)
        negative = weight * self.negative
        running = np.zeros((rows.shape[0], weight.shape[1] + 1))
        np.cumsum(negative, axis=1, out=running[:, 1:])
        # below + tied / 2 = (running[start] + running[end]) / 2
        beaten = (running[:, self.start] + running[:, self.end]) / 2
        positive = weight[:, self.positive]
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (positive * beaten).sum(axis=1) / (positive.sum(axis=1) * negative.sum(axis=1))
        return np.asarray(value.reshape(shape), dtype=np.float64)


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
