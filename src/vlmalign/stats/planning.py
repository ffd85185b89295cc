"""How many human labels a calibrated estimate needs for a given precision (`labels plan`).

With n labels among M responses and the judge's PPI++ weight λ, the calibrated estimate's
variance is about D · [Var(Y − λf) / n + λ² Var(f) / M] (Y people's verdict, f the judge's
score, D the design effect of responses clustered in items). The half-width of a 95% interval
is z times its square root, so the labels needed for a half-width W are the smallest n, over
λ in [0, 1], with D · Var(Y − λf) / n ≤ W² / z² − D λ² Var(f) / M. The moments come from the
labelled responses when there are enough of them, else from the judge's verdicts on the
dataset's reference answers (its sensitivity and specificity), else from no agreement at all
(the labels-only count). It is a plan, not a promise: the moments are estimates.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

from vlmalign.stats.minimums import MIN_LABELLED

Basis = Literal["labels", "references", "no agreement assumed"]
_LAMBDAS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class Moments:
    """What the plan rests on: Var(Y), Cov(Y, f), Var(f) and where they come from."""

    var_people: float
    covariance: float
    var_judge: float
    basis: Basis
    # The least variance of Y − λf assumed: a judge that agreed on every label so far is
    # planned as if one more label in n + 2 would disagree (as the estimator's own floor).
    residual_floor: float = 0.01


def moments_from_labels(scores: Sequence[float], human: Sequence[bool | None]) -> Moments | None:
    """From the labelled responses (None below `MIN_LABELLED` labels)."""
    pairs = [(s, float(h)) for s, h in zip(scores, human, strict=True) if h is not None]
    if len(pairs) < MIN_LABELLED:
        return None
    f, y = np.array(pairs).T
    covariance = float(np.cov(y, f)[0, 1])
    rate = 1 / (len(pairs) + 2)
    return Moments(
        float(np.var(y, ddof=1)),
        covariance,
        float(np.var(f, ddof=1)),
        "labels",
        residual_floor=rate * (1 - rate),
    )


def moments_from_references(
    rate: float, sensitivity: float | None, specificity: float | None
) -> Moments:
    """From a yes/no judge's sensitivity (its accuracy on aligned reference answers) and
    specificity (on misaligned ones), for responses people would call aligned at `rate` p:
    Var(Y) = p(1 − p), Cov(Y, f) = p(1 − p)(se + sp − 1) and Var(f) = q(1 − q) with
    q = p·se + (1 − p)(1 − sp). A judge at or below chance (or unmeasured) is planned as no
    agreement at all."""
    p = min(0.95, max(0.05, rate))
    if sensitivity is None or specificity is None or sensitivity + specificity - 1 <= 0:
        return Moments(p * (1 - p), 0.0, p * (1 - p), "no agreement assumed")
    q = p * sensitivity + (1 - p) * (1 - specificity)
    covariance = p * (1 - p) * (sensitivity + specificity - 1)
    return Moments(p * (1 - p), covariance, q * (1 - q), "references")


def design_effect(scores: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """1 + (mean cluster size − 1) · ICC of the judge's scores (one-way ANOVA estimate, ICC in
    [0, 1]): how much clustering in items inflates a variance over independent responses."""
    values = np.asarray(scores, dtype=np.float64)
    codes: dict[Hashable, int] = {}
    index = np.array([codes.setdefault(c, len(codes)) for c in clusters])
    groups = len(codes)
    if groups < 2 or values.size <= groups:
        return 1.0
    counts = np.bincount(index).astype(np.float64)
    means = np.bincount(index, weights=values) / counts
    between = float(np.sum(counts * (means - values.mean()) ** 2) / (groups - 1))
    within = float(np.sum((values - means[index]) ** 2) / (values.size - groups))
    size = (values.size - np.sum(counts**2) / values.size) / (groups - 1)
    if between + (size - 1) * within <= 0:
        return 1.0
    icc = min(1.0, max(0.0, (between - within) / (between + (size - 1) * within)))
    return 1.0 + (float(values.size) / groups - 1.0) * icc


def labels_needed(
    moments: Moments, responses: int, half_width: float, deff: float = 1.0, confidence: float = 0.95
) -> int:
    """The fewest labels for an interval of `half_width` (see the module docstring); may exceed
    `responses` when even labelling everything would not reach it."""
    if not 0 < half_width < 1:
        raise ValueError(f"the half-width must lie strictly between 0 and 1, got {half_width}")
    z = float(scipy_stats.norm.ppf((1 + confidence) / 2))
    budget = half_width**2 / z**2
    lam = _LAMBDAS
    residual = moments.var_people - 2 * lam * moments.covariance + lam**2 * moments.var_judge
    room = budget - deff * lam**2 * moments.var_judge / max(1, responses)
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = moments.residual_floor
        needed = np.where(room > 0, deff * np.maximum(residual, floor) / room, np.inf)
    best = float(np.min(needed))
    # Below MIN_LABELLED labels the report shows no figure, so a plan never asks for fewer.
    return max(MIN_LABELLED, math.ceil(best)) if math.isfinite(best) else responses * 100
