"""Agreement between raters: Cohen's kappa, Krippendorff's alpha, majorities, and a judge
against people's verdicts with intervals."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import krippendorff
import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import cohen_kappa_score

from vlmalign.stats.common import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Interval,
    Outcome,
    check_confidence,
    finite_percentiles,
    response_bootstrap,
)
from vlmalign.stats.minimums import MIN_DECIDED, TOO_FEW
from vlmalign.stats.proportions import proportion

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LabelT = TypeVar("LabelT", bound=Hashable)


def cohen_kappa(
    labels_a: Sequence[Hashable | None], labels_b: Sequence[Hashable | None]
) -> float | None:
    """Cohen's kappa between two raters (Cohen 1960), via `sklearn.metrics.cohen_kappa_score`.

    Pairs where either label is None (missing or undecided) are left out. Returns None when kappa
    is undefined: no pair, or both raters used one and the same category throughout (expected
    agreement is 1, so kappa is 0/0 — perfect agreement on one class says nothing about chance).
    """
    if len(labels_a) != len(labels_b):
        raise ValueError(f"raters labelled different counts: {len(labels_a)} vs {len(labels_b)}")
    pairs = [(x, y) for x, y in zip(labels_a, labels_b, strict=True) if _both_given(x, y)]
    categories = {label for pair in pairs for label in pair}
    if len(categories) < 2:
        return None
    first, second = zip(*pairs, strict=True)
    kappa = cohen_kappa_score(list(first), list(second), labels=sorted(categories, key=repr))
    return None if math.isnan(kappa) else float(kappa)


def krippendorff_alpha(
    reliability_data: Sequence[Sequence[Hashable | None]], level: Level = "nominal"
) -> float | None:
    """Krippendorff's alpha (Krippendorff 2004/2011), via the `krippendorff` package.

    `reliability_data[coder][unit]` is a label or None where that coder did not label that unit
    (alpha handles such missing data). Nominal labels may be any hashable values (strings are
    fine); other levels need numbers. Returns None when alpha is undefined: fewer than two
    distinct values, or no unit labelled by two coders.
    """
    if not reliability_data:
        return None
    if len({len(row) for row in reliability_data}) != 1:
        raise ValueError("every coder's row must have one entry per unit (None when missing)")
    matrix = _reliability_matrix(reliability_data, numeric=level != "nominal")
    values = matrix[~np.isnan(matrix)]
    pairable = np.sum(~np.isnan(matrix), axis=0) >= 2
    if np.unique(values).size < 2 or not pairable.any():
        return None
    alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    return None if math.isnan(alpha) else float(alpha)


def majority_label(labels: Iterable[LabelT | None]) -> LabelT | None:
    """The label given more often than any other (None entries ignored); None on a tie or empty.

    Ties are not broken by guessing: an item the raters split on has no majority.
    """
    counts = Counter(label for label in labels if label is not None).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


@dataclass(frozen=True)
class JudgeAgreement:
    """How a judge's verdicts compare with humans' on the same responses.

    Computed on the `n` responses that both judge and humans decided (the others are counted in
    `judge_unclear` / `human_unclear`, over all `pairs`). `confusion[judge][human]` counts them
    with keys "aligned" / "misaligned". `alignment_bias` = judge_aligned_rate −
    human_aligned_rate on those responses: > 0 means the judge over-estimates alignment.

    Every figure carries its interval: accuracy a Wilson interval; kappa and the bias a
    percentile bootstrap over those responses (`kappa_interval`, `alignment_bias_interval`).
    An interval is None where its figure is, or with fewer than two responses.
    """

    pairs: int
    n: int
    judge_unclear: int
    human_unclear: int
    accuracy: float | None
    accuracy_ci_low: float | None
    accuracy_ci_high: float | None
    kappa: float | None
    confusion: dict[str, dict[str, int]]
    judge_aligned_rate: float | None
    human_aligned_rate: float | None
    alignment_bias: float | None
    kappa_ci_low: float | None = None
    kappa_ci_high: float | None = None
    bias_ci_low: float | None = None
    bias_ci_high: float | None = None

    @property
    def too_few(self) -> bool:
        """Fewer than `MIN_DECIDED` responses decided by both: kappa and the difference of
        aligned rates are not shown as figures."""
        return self.n < MIN_DECIDED

    def summary(self) -> str:
        """One line for a report, e.g. "over-estimates alignment by 12.5 points (n=40)"."""
        if self.alignment_bias is None:
            return "no response decided by both judge and humans"
        if self.too_few:
            return f"{TOO_FEW} (n={self.n})"
        points = abs(self.alignment_bias) * 100
        if points < 0.05:
            return f"matches the humans' aligned rate (n={self.n})"
        direction = "over" if self.alignment_bias > 0 else "under"
        return f"{direction}-estimates alignment by {points:.1f} points (n={self.n})"


def judge_vs_human(
    judge: Sequence[Outcome],
    human: Sequence[Outcome],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> JudgeAgreement:
    """Agreement of a judge with human outcomes (`judges.human`) on the same responses.

    Accuracy is the share of agreeing verdicts (Wilson interval), kappa corrects it for chance
    (`cohen_kappa`; None when both use one class only); kappa and the alignment bias get
    percentile bootstrap intervals over responses (seeded: the same input gives the same one).
    """
    if len(judge) != len(human):
        raise ValueError(f"judge and human outcomes differ in length: {len(judge)} vs {len(human)}")
    decided = [(j, h) for j, h in zip(judge, human, strict=True) if j is not None and h is not None]
    n = len(decided)
    kappa_ci = kappa_interval(judge, human, confidence, resamples, seed)
    bias_ci = alignment_bias_interval(judge, human, confidence, resamples, seed)
    agree = sum(1 for j, h in decided if j == h)
    accuracy = proportion(agree, n, confidence)
    judge_aligned = sum(1 for j, _ in decided if j)
    human_aligned = sum(1 for _, h in decided if h)
    judge_rate = judge_aligned / n if n else None
    human_rate = human_aligned / n if n else None
    return JudgeAgreement(
        pairs=len(judge),
        n=n,
        judge_unclear=sum(1 for j in judge if j is None),
        human_unclear=sum(1 for h in human if h is None),
        accuracy=accuracy.rate,
        accuracy_ci_low=accuracy.ci_low,
        accuracy_ci_high=accuracy.ci_high,
        kappa=cohen_kappa([j for j, _ in decided], [h for _, h in decided]),
        confusion=_confusion(decided),
        judge_aligned_rate=judge_rate,
        human_aligned_rate=human_rate,
        alignment_bias=judge_rate - human_rate
        if judge_rate is not None and human_rate is not None
        else None,
        kappa_ci_low=kappa_ci[0] if kappa_ci else None,
        kappa_ci_high=kappa_ci[1] if kappa_ci else None,
        bias_ci_low=bias_ci[0] if bias_ci else None,
        bias_ci_high=bias_ci[1] if bias_ci else None,
    )


def kappa_interval(
    judge: Sequence[Outcome],
    human: Sequence[Outcome],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Percentile bootstrap interval of Cohen's kappa between a judge and humans.

    Only responses both decided count (as in `judge_vs_human`). Each resample draws as many of
    them as there are, with replacement, keeping a response's two verdicts together. Responses
    are treated as independent (samples of one prompt are not quite). A resample where kappa is
    undefined (both sides used one class only) is left out of the percentiles. None when kappa
    itself is undefined (`cohen_kappa`), with fewer than two responses, or when no resample has
    a kappa. Perfect agreement on both classes gives (1.0, 1.0).
    """
    check_confidence(confidence)
    judged, humans = _decided_arrays(judge, human)
    if judged.size < 2 or cohen_kappa(judged.tolist(), humans.tolist()) is None:
        return None
    result = response_bootstrap((judged, humans), _binary_kappa, confidence, resamples, seed)
    return finite_percentiles(result.bootstrap_distribution, confidence)


def alignment_bias_interval(
    judge: Sequence[Outcome],
    human: Sequence[Outcome],
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval | None:
    """Percentile bootstrap interval of judge_aligned_rate − human_aligned_rate.

    On the responses both decided, resampled (paired) as in `kappa_interval`; the statistic is
    the mean of judge − human (1, 0 or −1 per response). None with fewer than two responses;
    when every response gives the same difference the interval collapses onto it.
    """
    check_confidence(confidence)
    judged, humans = _decided_arrays(judge, human)
    if judged.size < 2:
        return None
    result = response_bootstrap((judged - humans,), _mean, confidence, resamples, seed)
    return finite_percentiles(result.bootstrap_distribution, confidence)


def _decided_arrays(
    judge: Sequence[Outcome], human: Sequence[Outcome]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Judge and human verdicts as 1.0/0.0 on the responses both decided."""
    if len(judge) != len(human):
        raise ValueError(f"judge and human outcomes differ in length: {len(judge)} vs {len(human)}")
    decided = [(j, h) for j, h in zip(judge, human, strict=True) if j is not None and h is not None]
    judged = np.array([float(j) for j, _ in decided], dtype=np.float64)
    humans = np.array([float(h) for _, h in decided], dtype=np.float64)
    return judged, humans


def _binary_kappa(judge: NDArray[Any], human: NDArray[Any], axis: int = -1) -> Any:
    """Cohen's kappa of two 0/1 raters along `axis`; nan where it is undefined (p_e = 1)."""
    observed = (judge == human).mean(axis=axis)
    judge_rate, human_rate = judge.mean(axis=axis), human.mean(axis=axis)
    expected = judge_rate * human_rate + (1 - judge_rate) * (1 - human_rate)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected < 1 - 1e-12, (observed - expected) / (1 - expected), np.nan)


def _mean(values: NDArray[Any], axis: int = -1) -> Any:
    return values.mean(axis=axis)


def _both_given(x: Hashable | None, y: Hashable | None) -> bool:
    return x is not None and y is not None


def _reliability_matrix(
    reliability_data: Sequence[Sequence[Hashable | None]], numeric: bool
) -> NDArray[np.float64]:
    """Coders × units floats with nan for missing; nominal labels become arbitrary codes."""
    codes: dict[Hashable, float] = {}
    for row in reliability_data:
        for value in row:
            if value is not None and value not in codes:
                codes[value] = _as_number(value) if numeric else float(len(codes))
    return np.array(
        [[math.nan if v is None else codes[v] for v in row] for row in reliability_data],
        dtype=np.float64,
    )


def _as_number(value: Hashable) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"ordinal/interval/ratio alpha needs numeric labels, got {value!r}")
    return float(value)


def _confusion(decided: Sequence[tuple[bool | None, bool | None]]) -> dict[str, dict[str, int]]:
    def name(outcome: bool | None) -> str:
        return "aligned" if outcome else "misaligned"

    confusion = {j: {h: 0 for h in ("aligned", "misaligned")} for j in ("aligned", "misaligned")}
    for judge, human in decided:
        confusion[name(judge)][name(human)] += 1
    return confusion
