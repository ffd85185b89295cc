"""Rates people would give, from a judge on every response and human labels on a sample of them.

Prediction-powered inference with power tuning (PPI++: Angelopoulos, Duchi & Zrnic, "PPI++:
Efficient Prediction-Powered Inference", arXiv 2311.01453, 2023; PPI: Angelopoulos et al.,
Science 382:669, 2023). With a judge's score f on all N responses and people's verdict Y on a
random sample L of them, the estimate of the rate people would give is

    θ̂(λ) = λ · mean_all(f) + mean_L(Y − λ f)

Its second term corrects the judge's rate by the judge's measured error on the labelled sample,
so θ̂ is unbiased for any judge and any λ. λ = 0 is the labels-only mean; λ = 1 is plain PPI.
λ is tuned to the value that minimises the estimated variance (clipped to [0, 1]), so a judge
that agrees with people narrows the interval and a judge at chance gets λ ≈ 0 and costs
(almost) nothing.

The mean of f runs over **all** responses, the labelled ones included (a two-phase, or
"difference", estimator), so a labelled sample drawn with unequal probabilities is handled by
weighting its mean alone (Hájek weights: inverse inclusion probabilities, normalised). With
every response labelled the estimate is exactly the labels' mean.

Variance: a delete-one-cluster jackknife (the cluster is the item of each response: samples
of one item are not independent), with λ tuned anew in every replicate, so the interval pays for
tuning λ on the same labels; a Student t interval with C − 1 degrees of freedom over the C
labelled clusters, clipped to [0, 1]. Should the tuned estimate come out more than 5% less
precise than the labels alone (a judge at chance, few labels), the labels-only estimate (λ = 0)
is reported, so a useless judge costs at most 5% of width. When the labels show no variation
at all (every label equals its judge score) the variance is floored at that of one disagreement
among n + 2 labels, p(1 − p)/n with p = 1/(n + 2), so a handful of agreeing labels never gives
a zero-width interval. The
coverage of this interval is checked by simulation in tests/stats/test_calibrated.py.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats

from vlmalign.stats.common import DEFAULT_CONFIDENCE

METHOD = "prediction-powered (PPI++), clustered by item"
LABELS_ONLY = "labels only (no judge)"
PAIRED_METHOD = "prediction-powered difference, paired over items"
#: How much wider than the labels' own interval a tuned one may come out before the labels-only
#: estimate is reported instead. Not 1: choosing the narrower of two intervals every time would
#: cost coverage (measured: 93.5% instead of 95% in clustered designs); 1.05 costs under 1 point.
WIDTH_TOLERANCE = 1.05

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CalibratedRate:
    """The rate people would give, estimated from labels and a judge (`prediction_powered_rate`).

    `estimate` and the interval are None without labels; the interval is None with fewer than
    two labelled clusters. `lam` is the PPI++ weight of the judge (0: labels only). The
    labels-only interval, computed the same way with λ = 0, shows what the judge bought.
    """

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n_labelled: int
    n_unlabelled: int
    lam: float | None
    method: str
    labelled_clusters: int = 0
    labels_only_ci_low: float | None = None
    labels_only_ci_high: float | None = None
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def half_width(self) -> float | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


#: The per-cluster sums the estimator needs (labelled weight, weighted labels, weighted
#: labelled scores, scores of all responses, responses); see `_Sums`.
_PARTS = ("w", "y", "f", "g", "m")


class _Sums:
    """One condition's responses reduced to per-cluster sums.

    With W, Y, F the weighted sums of 1, label and score over a cluster's labelled responses and
    G, m the sum of scores and the count over all its responses, the estimate, its tuned λ and
    every delete-one-cluster replicate follow from the totals of these sums and of their
    pairwise products, in O(clusters).
    """

    def __init__(
        self,
        judge: Sequence[float],
        human: Sequence[bool | None],
        cluster: NDArray[np.int64],
        weights: Sequence[float] | None,
        clusters: int,
    ) -> None:
        scores = _scores(judge)
        if len(human) != scores.size:
            raise ValueError(f"judge and human differ in length: {scores.size} vs {len(human)}")
        labelled = np.array([h is not None for h in human], dtype=bool)
        labels = np.array([1.0 if h else 0.0 for h in human], dtype=np.float64)
        weight = _weights(weights, labelled)
        self.n_labelled = int(labelled.sum())
        self.n_responses = int(scores.size)
        self.labelled_clusters = int(np.unique(cluster[labelled]).size)

        def per_cluster(values: FloatArray) -> FloatArray:
            return np.bincount(cluster, weights=values, minlength=clusters).astype(np.float64)

        self.parts = {
            "w": per_cluster(weight),
            "y": per_cluster(weight * labels),
            "f": per_cluster(weight * scores),
            "g": per_cluster(scores),
            "m": per_cluster(np.ones_like(scores)),
        }
        self.totals = {k: float(v.sum()) for k, v in self.parts.items()}
        self.products = {
            (a, b): float(self.parts[a] @ self.parts[b])
            for i, a in enumerate(_PARTS)
            for b in _PARTS[i:]
        }

    def fit(self, lam: float | None = None) -> tuple[float, float]:
        """(estimate, λ) on all responses; λ tuned unless given."""
        estimate, tuned = _fit(self.totals, self.products, lam)
        return float(estimate), float(tuned)

    def replicates(self, lam: float | None = None) -> FloatArray:
        """The estimate with each cluster left out in turn (nan where no label would remain)."""
        totals = {k: self.totals[k] - v for k, v in self.parts.items()}
        products = {
            (a, b): value - self.parts[a] * self.parts[b] for (a, b), value in self.products.items()
        }
        keep = totals["w"] > 0
        safe = {k: np.where(keep, v, 1.0) for k, v in totals.items()}
        estimates = np.asarray(_fit(safe, products, lam)[0], dtype=np.float64)
        return np.where(keep, estimates, np.nan)

    def jackknife_variance(self, lam: float | None = None) -> float:
        """Delete-one-cluster jackknife variance of the estimate (λ tuned in each replicate
        unless given); only clusters whose removal leaves a label are replicates."""
        estimates = self.replicates(lam)
        replicates = estimates[np.isfinite(estimates)]
        count = replicates.size
        if count < 2:
            return 0.0
        return float((count - 1) / count * np.sum((replicates - replicates.mean()) ** 2))


def _fit(
    totals: dict[str, Any], products: dict[tuple[str, str], Any], lam: float | None
) -> tuple[Any, Any]:
    """Estimate and λ from totals (scalars, or arrays of replicates).

    Per cluster, u = (Y − ȳ W) / ΣW and v = (F − f̄_L W) / ΣW − (G − f̄ m) / Σm give the
    linearised estimate θ̂(λ) − θ ≈ Σ (u − λ v), so the variance-minimising λ is Σuv / Σv²;
    both sums are expanded in the totals of pairwise products.
    """

    def product(a: str, b: str) -> Any:
        return products[(a, b)] if (a, b) in products else products[(b, a)]

    w, m = totals["w"], totals["m"]
    y_mean, f_labelled, f_mean = totals["y"] / w, totals["f"] / w, totals["g"] / m
    if lam is not None:
        return y_mean + lam * (f_mean - f_labelled), lam
    uf = product("y", "f") - f_labelled * product("y", "w") - y_mean * product("w", "f")
    uf = uf + y_mean * f_labelled * product("w", "w")
    ug = product("y", "g") - f_mean * product("y", "m") - y_mean * product("w", "g")
    ug = ug + y_mean * f_mean * product("w", "m")
    ff = product("f", "f") - 2 * f_labelled * product("f", "w") + f_labelled**2 * product("w", "w")
    fg = product("f", "g") - f_mean * product("f", "m") - f_labelled * product("w", "g")
    fg = fg + f_labelled * f_mean * product("w", "m")
    gg = product("g", "g") - 2 * f_mean * product("g", "m") + f_mean**2 * product("m", "m")
    uv = uf / w**2 - ug / (w * m)
    vv = ff / w**2 - 2 * fg / (w * m) + gg / m**2
    with np.errstate(divide="ignore", invalid="ignore"):
        tuned = np.where(vv > 1e-15, np.clip(uv / np.where(vv > 1e-15, vv, 1.0), 0.0, 1.0), 0.0)
    return y_mean + tuned * (f_mean - f_labelled), tuned


def prediction_powered_rate(
    judge: Sequence[float],
    human: Sequence[bool | None],
    clusters: Sequence[Hashable] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    weights: Sequence[float] | None = None,
) -> CalibratedRate:
    """The rate of aligned responses people would give, with its interval (PPI++).

    `judge`: one score in [0, 1] per response (a graded judge's P(aligned), or 1/0 for its
    verdict; the report enters an unclear verdict as 0, as its accuracy counts it).
    `human`: True / False per labelled response, None where nobody labelled it (or people were
    unsure). `clusters`: the item of each response (default: every response its own).
    `weights`: inverse inclusion probabilities of the labelled responses when the sample was not
    uniform (entries of unlabelled responses are ignored). The labelled responses must be a
    random sample of the condition's responses (with those inclusion probabilities).
    """
    _check_confidence(confidence)
    codes = _codes(clusters, len(judge))
    sums = _Sums(judge, human, codes, weights, int(codes.max(initial=-1)) + 1)
    n, total = sums.n_labelled, sums.n_responses
    if n == 0:
        return CalibratedRate(None, None, None, 0, total, None, METHOD, confidence=confidence)
    labels_mean, _ = sums.fit(lam=0.0)
    estimate, lam = sums.fit()
    labels_only = _interval(sums, labels_mean, sums.jackknife_variance(lam=0.0), confidence)
    interval = _interval(sums, estimate, sums.jackknife_variance(), confidence)
    if interval and labels_only and _width(interval) > WIDTH_TOLERANCE * _width(labels_only):
        # The judge did not pay for its tuning here: the labels alone are more precise.
        estimate, lam, interval = labels_mean, 0.0, labels_only
    return CalibratedRate(
        estimate=_clip(estimate),
        ci_low=interval[0] if interval else None,
        ci_high=interval[1] if interval else None,
        n_labelled=n,
        n_unlabelled=total - n,
        lam=lam,
        method=METHOD,
        labelled_clusters=sums.labelled_clusters,
        labels_only_ci_low=labels_only[0] if labels_only else None,
        labels_only_ci_high=labels_only[1] if labels_only else None,
        confidence=confidence,
    )


@dataclass(frozen=True)
class CalibratedDifference:
    """Calibrated rate of condition B minus that of A, paired over the items both have
    (`accuracy_a`, `accuracy_b`: the two calibrated rates, named as in `PairedComparison`)."""

    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    method: str = PAIRED_METHOD


Condition = tuple[Sequence[float], Sequence[bool | None], Sequence[Hashable]]


def prediction_powered_difference(
    a: Condition, b: Condition, confidence: float = DEFAULT_CONFIDENCE
) -> CalibratedDifference | None:
    """θ̂_B − θ̂_A for two conditions on the same items, each given as (judge, human, clusters).

    Each condition keeps its own tuned λ. The jackknife deletes one item from both conditions
    at once, so the correlation of an item's responses across the two conditions narrows the
    interval as a paired test should (t interval and two-sided t-test with (items − 1) degrees
    of freedom). Responses of items only one condition has are left out. None unless at least
    two shared items are labelled in each condition.
    """
    _check_confidence(confidence)
    shared = sorted(set(a[2]) & set(b[2]), key=repr)
    index = {c: i for i, c in enumerate(shared)}
    fits, replicates = [], []
    for judge, human, clusters in (a, b):
        keep = [i for i, c in enumerate(clusters) if c in index]
        codes = np.array([index[clusters[i]] for i in keep], dtype=np.int64)
        if not keep:
            return None
        sums = _Sums([judge[i] for i in keep], [human[i] for i in keep], codes, None, len(shared))
        if sums.labelled_clusters < 2:
            return None
        fits.append(sums.fit()[0])
        replicates.append(sums.replicates())
    both = np.isfinite(replicates[0]) & np.isfinite(replicates[1])
    deltas = (replicates[1] - replicates[0])[both]
    count = deltas.size
    if count < 2:
        return None
    variance = (count - 1) / count * float(np.sum((deltas - deltas.mean()) ** 2))
    difference = fits[1] - fits[0]
    df = count - 1
    se = math.sqrt(variance)
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, df)) * se
    if se > 0:
        p_value = float(2 * scipy_stats.t.sf(abs(difference) / se, df))
    else:
        p_value = 1.0 if abs(difference) < 1e-12 else 0.0
    return CalibratedDifference(
        accuracy_a=_clip(fits[0]),
        accuracy_b=_clip(fits[1]),
        difference=difference,
        ci_low=max(-1.0, difference - half),
        ci_high=min(1.0, difference + half),
        p_value=min(1.0, p_value),
        n_items=len(shared),
    )


def _codes(clusters: Sequence[Hashable] | None, size: int) -> NDArray[np.int64]:
    """Clusters as indices 0..C-1 in order of appearance (default: one per response)."""
    if clusters is None:
        return np.arange(size, dtype=np.int64)
    if len(clusters) != size:
        raise ValueError(f"clusters differ in length: {len(clusters)} vs {size}")
    codes: dict[Hashable, int] = {}
    return np.array([codes.setdefault(c, len(codes)) for c in clusters], dtype=np.int64)


def _scores(judge: Sequence[float]) -> FloatArray:
    scores = np.asarray(judge, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("no responses: a rate needs at least one judged response")
    if not np.all(np.isfinite(scores)) or np.any((scores < 0) | (scores > 1)):
        raise ValueError("judge scores must lie in [0, 1] (enter an unclear verdict as 0)")
    return scores


def _weights(weights: Sequence[float] | None, labelled: NDArray[np.bool_]) -> FloatArray:
    """Weights of the labelled responses (1 unless given), 0 for the others."""
    raw = np.ones(labelled.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if raw.size != labelled.size:
        raise ValueError(f"weights differ in length: {raw.size} vs {labelled.size}")
    chosen = raw[labelled]
    if not np.all(np.isfinite(chosen)) or np.any(chosen <= 0):
        raise ValueError("weights of labelled responses must be positive and finite")
    return np.where(labelled, raw, 0.0)


def _interval(
    sums: _Sums, estimate: float, variance: float, confidence: float
) -> tuple[float, float] | None:
    clusters = sums.labelled_clusters
    if clusters < 2:
        return None
    n = sums.n_labelled
    floor_rate = 1 / (n + 2)
    variance = max(variance, floor_rate * (1 - floor_rate) / n)
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, clusters - 1)) * math.sqrt(variance)
    return _clip(estimate - half), _clip(estimate + half)


def _width(interval: tuple[float, float]) -> float:
    return interval[1] - interval[0]


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _clip(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
