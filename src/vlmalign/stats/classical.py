"""The statistics of a study: intervals, paired tests, rates and agreement (pure, no torch).

Data shapes used throughout:

- an *outcome* is one judged response: ``True`` (aligned), ``False`` (not aligned) or ``None``
  (unclear). Following the report's convention (`report/tables.py`), an unclear verdict counts in
  ``n`` and **not** as aligned, so accuracy = aligned / all judged responses;
- *outcomes by item* maps an item id to the outcomes of its samples (one per sample of the same
  prompt). Samples of one item are not independent, so every interval over several samples per
  item resamples whole items (a cluster bootstrap) instead of treating responses as independent.

Every result is a frozen dataclass of plain ``int``/``float``/``str``/``None`` (no numpy scalars),
so ``dataclasses.asdict`` gives JSON-ready dicts. Quantities that are undefined (no data, a
degenerate table) are ``None``, never ``nan``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import krippendorff
import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from vlmalign.stats.minimums import MIN_DECIDED, TOO_FEW

Outcome = bool | None
OutcomesByItem = Mapping[str, Sequence[Outcome]]
Interval = tuple[float, float]
Level = Literal["nominal", "ordinal", "interval", "ratio"]
AccuracyMethod = Literal["wilson", "cluster-bootstrap"]
ComparisonMethod = Literal["mcnemar-exact", "paired-bootstrap"]

STANCES = ("yes", "no", "unclear")  # the stance judge's labels (judges/stance.py)

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000

LabelT = TypeVar("LabelT", bound=Hashable)


# --- single proportions --------------------------------------------------------------------------


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> Interval | None:
    """Wilson score interval for a binomial proportion (Wilson 1927), via scipy's `binomtest`.

    Returns ``(low, high)`` within [0, 1], or ``None`` when ``n == 0`` (no data, no interval).
    Wilson keeps good coverage for small n and proportions near 0 or 1, where the Wald interval
    collapses.
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None
    ci = scipy_stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    return _clip_unit(float(ci.low)), _clip_unit(float(ci.high))


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


# --- accuracy over items with one or several samples ---------------------------------------------


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
    _check_confidence(confidence)
    aligned, responses = _item_totals(outcomes_by_item)
    if len(aligned) < 2:
        return None
    result = _bootstrap((aligned, responses), _pooled_rate, confidence, resamples, seed)
    low, high = result.confidence_interval
    return _clip_unit(float(low)), _clip_unit(float(high))


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
    successes = sum(1 for outcome in flat if _aligned(outcome))
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


# --- how well a judge separates known verdicts ---------------------------------------------------


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
    _check_confidence(confidence)
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
        low, high = _percentile_interval(stat, confidence)
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
    low, high = _percentile_interval(np.asarray(values), confidence)
    return auc, low, high


def _mover_mean_interval(
    aligned: tuple[int, int], misaligned: tuple[int, int], confidence: float
) -> Interval:
    """Square-and-add interval for the mean of two independent proportions, each given as
    (hits, n) with n > 0, from their Wilson intervals (see `balanced_accuracy_estimate`)."""
    a, m = aligned[0] / aligned[1], misaligned[0] / misaligned[1]
    low_a, high_a = _required(wilson_interval(*aligned, confidence))
    low_m, high_m = _required(wilson_interval(*misaligned, confidence))
    mean = (a + m) / 2
    # Each side's distance to its limit is halved (the mean weighs it 1/2), then the two are
    # combined as independent errors (Newcombe's square-and-add with no correlation).
    below = _square_and_add((a - low_a) / 2, (m - low_m) / 2, phi=0.0)
    above = _square_and_add((high_a - a) / 2, (high_m - m) / 2, phi=0.0)
    return _clip_unit(mean - below), _clip_unit(mean + above)


def _percentile_interval(
    statistic: NDArray[np.float64], confidence: float
) -> tuple[float | None, float | None]:
    finite = statistic[np.isfinite(statistic)]
    if finite.size == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return _clip_unit(float(low)), _clip_unit(float(high))


# --- paired comparisons of two conditions on the same items --------------------------------------


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
        (_aligned(x), _aligned(y)) for x, y in zip(a, b, strict=True)
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
    low_a, high_a = _required(wilson_interval(aligned_a, n, confidence))
    low_b, high_b = _required(wilson_interval(aligned_b, n, confidence))
    phi = _newcombe_phi(table)
    difference = rate_b - rate_a
    below = _square_and_add(rate_b - low_b, high_a - rate_a, phi)
    above = _square_and_add(high_b - rate_b, rate_a - low_a, phi)
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
    _check_confidence(confidence)
    shared = _shared_items(a_by_item, b_by_item)
    if len(shared) < 2:
        return None
    a_aligned, a_responses = _item_totals({item: a_by_item[item] for item in shared})
    b_aligned, b_responses = _item_totals({item: b_by_item[item] for item in shared})
    data = (a_aligned, a_responses, b_aligned, b_responses)
    result = _bootstrap(data, _pooled_difference, confidence, resamples, seed)
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
        low, high = _required(newcombe_paired_interval(table, confidence))
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


# --- breakdowns ----------------------------------------------------------------------------------


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


# --- agreement between raters --------------------------------------------------------------------


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
    _check_confidence(confidence)
    judged, humans = _decided_arrays(judge, human)
    if judged.size < 2 or cohen_kappa(judged.tolist(), humans.tolist()) is None:
        return None
    result = _response_bootstrap((judged, humans), _binary_kappa, confidence, resamples, seed)
    return _finite_percentiles(result.bootstrap_distribution, confidence)


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
    _check_confidence(confidence)
    judged, humans = _decided_arrays(judge, human)
    if judged.size < 2:
        return None
    result = _response_bootstrap((judged - humans,), _mean, confidence, resamples, seed)
    return _finite_percentiles(result.bootstrap_distribution, confidence)


# --- helpers -------------------------------------------------------------------------------------


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


def _response_bootstrap(
    data: tuple[NDArray[np.float64], ...],
    statistic: Any,
    confidence: float,
    resamples: int,
    seed: int,
) -> Any:
    """Paired bootstrap over responses, in batches (memory stays small for long runs)."""
    with warnings.catch_warnings():  # a collapsed distribution is expected, and documented
        warnings.simplefilter("ignore", scipy_stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _bootstrap(data, statistic, confidence, resamples, seed, batch=1_000)


def _finite_percentiles(distribution: NDArray[np.float64], confidence: float) -> Interval | None:
    """The percentile interval of the defined (finite) resampled values, as scipy computes it."""
    finite = distribution[np.isfinite(distribution)]
    if finite.size == 0:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return _tidy(float(low)), _tidy(float(high))


def _tidy(value: float) -> float:
    """Drop floating-point dust (-8e-17 is 0), so an interval never reads "-0.00"."""
    return round(value, 12) + 0.0


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _clip_unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def _required(interval: Interval | None) -> Interval:
    if interval is None:  # callers only ask with n > 0
        raise AssertionError("interval unexpectedly undefined")
    return interval


def _aligned(outcome: Outcome) -> bool:
    return outcome is not None and bool(outcome)


def _both_given(x: Hashable | None, y: Hashable | None) -> bool:
    return x is not None and y is not None


def _item_totals(
    outcomes_by_item: OutcomesByItem,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per item with responses: (aligned count, response count), in the mapping's order."""
    judged = [samples for samples in outcomes_by_item.values() if samples]
    aligned = np.array([sum(_aligned(o) for o in samples) for samples in judged], dtype=float)
    responses = np.array([len(samples) for samples in judged], dtype=float)
    return aligned, responses


def _pooled_rate(aligned: NDArray[Any], responses: NDArray[Any], axis: int = -1) -> Any:
    return aligned.sum(axis=axis) / responses.sum(axis=axis)


def _pooled_difference(
    a_aligned: NDArray[Any],
    a_responses: NDArray[Any],
    b_aligned: NDArray[Any],
    b_responses: NDArray[Any],
    axis: int = -1,
) -> Any:
    return _pooled_rate(b_aligned, b_responses, axis) - _pooled_rate(a_aligned, a_responses, axis)


def _bootstrap(
    data: tuple[NDArray[np.float64], ...],
    statistic: Any,
    confidence: float,
    resamples: int,
    seed: int,
    batch: int | None = None,
) -> Any:
    """Percentile bootstrap: `paired=True` resamples the same units (items or responses) in
    every array; `batch` resamples at a time bounds memory."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    return scipy_stats.bootstrap(
        data,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        batch=batch,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


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
    return sum(1 for outcome in flat if _aligned(outcome)) / len(flat)


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


def _square_and_add(first: float, second: float, phi: float) -> float:
    return math.sqrt(max(0.0, first**2 + second**2 - 2 * phi * first * second))


def _check_stance(stance: str | None) -> str | None:
    if stance is not None and stance not in STANCES:
        raise ValueError(f"unknown stance {stance!r}; expected one of {', '.join(STANCES)}")
    return stance


def _is_unclear(verdict: bool | str | None) -> bool:
    if isinstance(verdict, str):
        return _check_stance(verdict) == "unclear"
    return verdict is None


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
