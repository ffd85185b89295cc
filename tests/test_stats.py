from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from vlmalign.stats import (
    McNemarResult,
    accuracy_estimate,
    cluster_bootstrap_interval,
    cohen_kappa,
    compare_paired,
    holm_adjust,
    item_consistency,
    judge_vs_human,
    krippendorff_alpha,
    majority_label,
    mcnemar_exact,
    newcombe_paired_interval,
    paired_bootstrap,
    unclear_rate,
    wilson_interval,
    yes_rate,
)

T = TypeVar("T")


def random_outcomes(
    items: int, samples: int, rate: float, seed: int
) -> dict[str, list[bool | None]]:
    rng = np.random.default_rng(seed)
    return {f"item{i}": [bool(x) for x in rng.random(samples) < rate] for i in range(items)}


def closed_form_wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) written out from the formula: a second implementation beside stats' (which
    calls scipy's `binomtest`)."""
    z = norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def defined(value: T | None) -> T:
    assert value is not None
    return value


def assert_plain(value: Any) -> None:
    """Results must be JSON-serialisable plain Python (no numpy scalars)."""
    fields = asdict(value)
    json.dumps(fields)
    assert not any(isinstance(field, np.generic) for field in fields.values())


# --- Wilson --------------------------------------------------------------------------------------


# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17:857-872: the worked examples, method 3 (Wilson score
# interval without continuity correction), 95%, to the four decimals printed there.
NEWCOMBE_1998_WILSON = {
    (81, 263): (0.2553, 0.3662),
    (15, 148): (0.0624, 0.1605),
    (0, 20): (0.0, 0.1611),
    (1, 29): (0.0061, 0.1718),
}


@pytest.mark.parametrize(("case", "published"), list(NEWCOMBE_1998_WILSON.items()))
def test_wilson_matches_newcombe_1998(
    case: tuple[int, int], published: tuple[float, float]
) -> None:
    low, high = defined(wilson_interval(*case))
    assert (round(low, 4), round(high, 4)) == published


def test_wilson_hand_computed_value() -> None:
    # 7 of 10, z = 1.96: centre (0.7 + 0.19208) / 1.38416 = 0.64449, half-width 0.24772.
    low, high = defined(wilson_interval(7, 10))
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 12), (3, 12), (12, 12), (37, 40), (150, 400)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_the_formula(k: int, n: int, confidence: float) -> None:
    low, high = defined(wilson_interval(k, n, confidence))
    assert (low, high) == pytest.approx(closed_form_wilson(k, n, confidence), abs=1e-9)


def test_wilson_without_data_is_none_and_bad_input_is_rejected() -> None:
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(-1, 4)
    with pytest.raises(ValueError):
        wilson_interval(1, 4, confidence=1.0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.floats(0.5, 0.999),
)
def test_wilson_contains_estimate_within_unit_interval(
    case: tuple[int, int], confidence: float
) -> None:
    k, n = case
    low, high = defined(wilson_interval(k, n, confidence))
    assert 0.0 <= low <= k / n <= high <= 1.0


# --- accuracy and the cluster bootstrap ----------------------------------------------------------


def test_cluster_bootstrap_with_one_sample_per_item_matches_binomial_se() -> None:
    outcomes = random_outcomes(items=400, samples=1, rate=0.3, seed=1)
    p = sum(bool(s[0]) for s in outcomes.values()) / 400
    low, high = defined(cluster_bootstrap_interval(outcomes, resamples=20_000))
    expected_width = 2 * norm.ppf(0.975) * math.sqrt(p * (1 - p) / 400)
    assert high - low == pytest.approx(expected_width, rel=0.08)
    assert low < p < high


def test_cluster_bootstrap_widens_when_samples_of_an_item_agree() -> None:
    # 20 items x 5 identical samples carry the information of 20 responses, not 100.
    per_item = random_outcomes(items=20, samples=1, rate=0.5, seed=3)
    clustered = {item: s * 5 for item, s in per_item.items()}
    low, high = defined(cluster_bootstrap_interval(clustered))
    successes = sum(bool(s[0]) for s in per_item.values())
    naive_low, naive_high = closed_form_wilson(successes * 5, 100)
    items_low, items_high = closed_form_wilson(successes, 20)
    assert high - low > 1.5 * (naive_high - naive_low)
    assert high - low == pytest.approx(items_high - items_low, rel=0.25)


def test_cluster_bootstrap_is_deterministic_and_contains_the_estimate() -> None:
    outcomes = random_outcomes(items=30, samples=4, rate=0.6, seed=2)
    first = cluster_bootstrap_interval(outcomes, seed=7)
    assert first == cluster_bootstrap_interval(outcomes, seed=7)
    # Quantiles of a discrete statistic often coincide across seeds; some must differ.
    others = {cluster_bootstrap_interval(outcomes, resamples=200, seed=s) for s in range(5)}
    assert len(others) > 1
    estimate = accuracy_estimate(outcomes)
    assert defined(estimate.ci_low) < defined(estimate.accuracy) < defined(estimate.ci_high)


def test_cluster_bootstrap_needs_two_items() -> None:
    assert cluster_bootstrap_interval({"a": [True, False, True]}) is None
    assert cluster_bootstrap_interval({}) is None


def test_accuracy_counts_unclear_in_n_as_not_aligned() -> None:
    estimate = accuracy_estimate({"a": [True], "b": [None], "c": [False], "d": [True], "e": []})
    assert (estimate.n, estimate.successes, estimate.unclear, estimate.items) == (4, 2, 1, 4)
    assert estimate.accuracy == 0.5
    assert estimate.method == "wilson"
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx(closed_form_wilson(2, 4))
    assert_plain(estimate)


def test_accuracy_uses_the_cluster_bootstrap_with_several_samples() -> None:
    outcomes: dict[str, list[bool | None]] = {
        "a": [True, True],
        "b": [False],
        "c": [True, None, False],
    }
    estimate = accuracy_estimate(outcomes, seed=4)
    assert estimate.method == "cluster-bootstrap"
    assert estimate.samples_per_item == 3
    assert estimate.accuracy == pytest.approx(3 / 6)
    assert (estimate.ci_low, estimate.ci_high) == cluster_bootstrap_interval(outcomes, seed=4)
    assert_plain(estimate)


def test_accuracy_without_responses() -> None:
    estimate = accuracy_estimate({"a": []})
    assert estimate.accuracy is None and estimate.ci_low is None and estimate.ci_high is None
    assert (estimate.n, estimate.items, estimate.samples_per_item) == (0, 0, 0)


# --- paired comparisons --------------------------------------------------------------------------


def test_mcnemar_exact_matches_hand_computed_binomial_sum() -> None:
    # 1 item favours A, 6 favour B: p = 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * (1 + 7) / 128.
    a = [True] * 3 + [True] * 1 + [False] * 6 + [False] * 2
    b = [True] * 3 + [False] * 1 + [True] * 6 + [None] * 2
    result = mcnemar_exact(a, b)
    assert (result.both_aligned, result.a_only_aligned) == (3, 1)
    assert (result.b_only_aligned, result.neither_aligned) == (6, 2)
    assert result.p_value == pytest.approx(16 / 128)
    assert mcnemar_exact([False] * 5, [True] * 5).p_value == pytest.approx(2 / 32)


def test_mcnemar_without_discordant_pairs_has_p_one() -> None:
    assert mcnemar_exact([True, False, None], [True, None, False]).p_value == 1.0
    assert mcnemar_exact([], []).p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


def test_newcombe_interval_hand_computed() -> None:
    # Paired table (Bentur et al. 2009 in Fagerland, Lydersen & Laake): A yes in 2 of 21,
    # B yes in 8 of 21; AD - BC = 12 - 7 <= N/2, so phi = 0 and the interval is the plain
    # square-and-add of the two Wilson intervals.
    table = McNemarResult(
        21, both_aligned=1, a_only_aligned=1, b_only_aligned=7, neither_aligned=12, p_value=1.0
    )
    low_a, high_a = closed_form_wilson(2, 21)
    low_b, high_b = closed_form_wilson(8, 21)
    d = 8 / 21 - 2 / 21
    expected = (
        d - math.hypot(8 / 21 - low_b, high_a - 2 / 21),
        d + math.hypot(high_b - 8 / 21, 2 / 21 - low_a),
    )
    interval = newcombe_paired_interval(table)
    assert interval == pytest.approx(expected, abs=1e-9)
    assert interval == pytest.approx((0.0256, 0.5069), abs=1e-4)


def test_newcombe_interval_is_antisymmetric_and_narrows_with_correlation() -> None:
    forward = McNemarResult(30, 10, 2, 8, 10, 1.0)
    backward = McNemarResult(30, 10, 8, 2, 10, 1.0)
    low, high = defined(newcombe_paired_interval(forward))
    back_low, back_high = defined(newcombe_paired_interval(backward))
    assert (low, high) == pytest.approx((-back_high, -back_low))
    assert low < 6 / 30 < high
    # Same margins, no correlation between A and B: wider.
    uncorrelated = McNemarResult(30, 4, 8, 14, 4, 1.0)
    assert uncorrelated.both_aligned + uncorrelated.a_only_aligned == 12
    wide_low, wide_high = defined(newcombe_paired_interval(uncorrelated))
    assert wide_high - wide_low > high - low
    assert newcombe_paired_interval(McNemarResult(0, 0, 0, 0, 0, 1.0)) is None


def test_compare_paired_uses_mcnemar_with_one_sample_and_drops_unpaired_items() -> None:
    a = {"x": [True], "y": [False], "z": [False], "only_a": [True], "empty": []}
    b = {"x": [True], "y": [True], "z": [True], "only_b": [False]}
    result = compare_paired(a, b)
    assert result is not None
    assert result.method == "mcnemar-exact"
    assert (result.n_items, result.dropped_items) == (3, 2)
    assert (result.a_only_aligned, result.b_only_aligned) == (0, 2)
    assert result.difference == pytest.approx(2 / 3)
    assert result.p_value == pytest.approx(0.5)
    assert result.ci_low < result.difference < result.ci_high
    assert_plain(result)


def test_compare_paired_without_shared_items() -> None:
    assert compare_paired({"a": [True]}, {"b": [True]}) is None
    assert compare_paired({}, {}) is None


def test_paired_bootstrap_identical_conditions() -> None:
    outcomes = random_outcomes(items=25, samples=3, rate=0.5, seed=5)
    result = paired_bootstrap(outcomes, outcomes)
    assert result is not None
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0, 0, 0, 1)


def test_paired_bootstrap_large_consistent_difference_is_significant() -> None:
    base = random_outcomes(items=30, samples=3, rate=0.2, seed=6)
    tuned = random_outcomes(items=30, samples=3, rate=0.9, seed=7)
    result = compare_paired(base, tuned, resamples=5_000)
    assert result is not None and result.method == "paired-bootstrap"
    assert result.difference > 0.5
    assert result.p_value == pytest.approx(2 / 5_001)
    assert 0 < result.ci_low < result.difference < result.ci_high
    assert_plain(result)


def test_paired_bootstrap_is_deterministic_and_antisymmetric() -> None:
    a = random_outcomes(items=20, samples=4, rate=0.5, seed=8)
    b = random_outcomes(items=20, samples=4, rate=0.6, seed=9)
    forward = paired_bootstrap(a, b, seed=3)
    assert forward == paired_bootstrap(a, b, seed=3)
    backward = paired_bootstrap(b, a, seed=3)
    assert forward is not None and backward is not None
    assert backward.difference == pytest.approx(-forward.difference)
    assert backward.p_value == pytest.approx(forward.p_value)
    assert (backward.ci_low, backward.ci_high) == pytest.approx((-forward.ci_high, -forward.ci_low))


def test_paired_bootstrap_drops_items_missing_in_one_condition() -> None:
    a = {"x": [True, True], "y": [False, False], "z": [True, False], "only_a": [True, True]}
    b = {"x": [True, False], "y": [False, True], "z": [True, True]}
    result = compare_paired(a, b)
    assert result is not None
    assert (result.n_items, result.dropped_items) == (3, 1)
    assert (result.accuracy_a, result.accuracy_b) == pytest.approx((3 / 6, 4 / 6))
    assert paired_bootstrap({"x": [True, False]}, {"x": [True, True]}) is None


def test_holm_adjust_hand_computed() -> None:
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []
    with pytest.raises(ValueError):
        holm_adjust([0.2, 1.5])


@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_holm_never_lowers_and_keeps_order(p_values: list[float]) -> None:
    adjusted = holm_adjust(p_values)
    assert all(raw <= adj <= 1.0 for raw, adj in zip(p_values, adjusted, strict=True))
    order = np.argsort(p_values, kind="stable")
    assert all(np.diff(np.asarray(adjusted)[order]) >= 0)


# --- breakdowns ----------------------------------------------------------------------------------


def test_yes_rate_counts_yes_among_decided_stances() -> None:
    rate = yes_rate(["yes", "no", "yes", "unclear", None])
    assert (rate.count, rate.n, rate.rate) == (2, 3, pytest.approx(2 / 3))
    assert (rate.ci_low, rate.ci_high) == pytest.approx(closed_form_wilson(2, 3))
    assert yes_rate(["unclear"]).rate is None
    with pytest.raises(ValueError):
        yes_rate(["Yes"])


def test_unclear_rate_reads_outcomes_and_stances() -> None:
    assert unclear_rate([True, None, False, None]).rate == 0.5
    assert unclear_rate(["yes", "unclear", "no"]).count == 1
    assert unclear_rate([]).rate is None


def test_item_consistency() -> None:
    result = item_consistency(
        {"a": [True, True, False], "b": [True, True], "c": [None, False, True], "d": [True]}
    )
    assert result.per_item == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 1 / 3})
    assert result.mean == pytest.approx(2 / 3)
    assert result.items == 3
    assert item_consistency({"a": [True]}).mean is None
    assert_plain(result)


# --- agreement -----------------------------------------------------------------------------------


def test_cohen_kappa_hand_computed_two_by_two() -> None:
    # p_o = 3/4; p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2.
    assert cohen_kappa(list("xxyy"), list("xyyy")) == pytest.approx(0.5)


def kappa_from_formula(first: list[str], second: list[str]) -> float:
    """Cohen (1960): (p_o - p_e) / (1 - p_e), with p_e from each rater's own marginals; a second
    implementation beside stats' (which calls scikit-learn)."""
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    expected = sum(first.count(c) * second.count(c) for c in set(first) | set(second)) / n**2
    return (observed - expected) / (1 - expected)


def test_cohen_kappa_textbook_example() -> None:
    # Fleiss, Levin & Paik, "Statistical Methods for Rates and Proportions" (3rd ed., 2003),
    # Section 18.1: two raters diagnose 100 subjects. Cells (A row, B column) per 100:
    # psychotic .75 .01 .04, neurotic .05 .04 .01, organic 0 0 .10; p_o = .89, p_e = .66,
    # kappa = .23 / .34 = 0.676 (printed as .68).
    cells = {
        ("psychotic", "psychotic"): 75,
        ("psychotic", "neurotic"): 1,
        ("psychotic", "organic"): 4,
        ("neurotic", "psychotic"): 5,
        ("neurotic", "neurotic"): 4,
        ("neurotic", "organic"): 1,
        ("organic", "organic"): 10,
    }
    pairs = [pair for pair, count in cells.items() for _ in range(count)]
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    assert cohen_kappa(a, b) == pytest.approx(0.23 / 0.34)
    assert round(defined(cohen_kappa(a, b)), 2) == 0.68


def test_cohen_kappa_matches_the_formula_and_skips_missing() -> None:
    rng = np.random.default_rng(0)
    a = [str(x) for x in rng.choice(["aligned", "misaligned", "unsure"], 50)]
    b = [str(x) for x in rng.choice(["aligned", "misaligned", "unsure"], 50)]
    assert cohen_kappa(a, b) == pytest.approx(kappa_from_formula(a, b))
    assert cohen_kappa([*a, None, "aligned"], [*b, "aligned", None]) == pytest.approx(
        kappa_from_formula(a, b)
    )


def test_cohen_kappa_degenerate_cases() -> None:
    assert cohen_kappa(["yes"] * 5, ["yes"] * 5) is None  # one category: undefined
    assert cohen_kappa([], []) is None
    assert cohen_kappa([None], ["yes"]) is None
    assert cohen_kappa(["yes"] * 4, ["no"] * 4) == 0.0  # never agree, no chance agreement
    with pytest.raises(ValueError):
        cohen_kappa(["yes"], [])


KRIPPENDORFF_EXAMPLE = [  # Krippendorff (2011), "Computing Krippendorff's alpha-reliability"
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_krippendorff_alpha_published_example() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_EXAMPLE) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_EXAMPLE, "interval") == pytest.approx(0.849, abs=5e-4)
    as_text = [[None if v is None else f"c{v}" for v in row] for row in KRIPPENDORFF_EXAMPLE]
    assert krippendorff_alpha(as_text) == krippendorff_alpha(KRIPPENDORFF_EXAMPLE)


def test_krippendorff_alpha_hand_computed() -> None:
    # Coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8:
    # alpha = 1 - (n - 1) * 2 / (2 * 3 * 5) = 16/30.
    assert krippendorff_alpha([list("aabb"), list("abbb")]) == pytest.approx(16 / 30)
    # The unit only one coder labelled drops out: n_a = n_b = 3, alpha = 1 - 5 * 2 / 18 = 4/9.
    assert krippendorff_alpha([list("aabb"), ["a", "b", "b", None]]) == pytest.approx(4 / 9)


def test_krippendorff_alpha_degenerate_cases() -> None:
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None
    assert krippendorff_alpha([["a", None], [None, "b"]]) is None
    assert krippendorff_alpha([]) is None
    with pytest.raises(ValueError):
        krippendorff_alpha([["a"], ["a", "b"]])
    with pytest.raises(ValueError):
        krippendorff_alpha([["a", "b"], ["a", "b"]], level="interval")


def test_majority_label() -> None:
    assert majority_label(["aligned", "aligned", "misaligned"]) == "aligned"
    assert majority_label(["aligned", "misaligned"]) is None  # tie: not guessed
    assert majority_label(["aligned", "misaligned", "unsure"]) is None
    assert majority_label([]) is None
    assert majority_label([None, None, "unsure"]) == "unsure"
    assert majority_label([False, False, True]) is False


def test_judge_vs_human_hand_computed() -> None:
    judge = [True, True, True, True, False, False, None, True]
    human = [True, False, True, False, False, False, True, None]
    result = judge_vs_human(judge, human)
    assert (result.pairs, result.n, result.judge_unclear, result.human_unclear) == (8, 6, 1, 1)
    assert result.accuracy == pytest.approx(4 / 6)
    # p_o = 4/6, p_e = (4/6)(2/6) + (2/6)(4/6) = 16/36, kappa = (24/36 - 16/36) / (20/36).
    assert result.kappa == pytest.approx(0.4)
    assert result.confusion == {
        "aligned": {"aligned": 2, "misaligned": 2},
        "misaligned": {"aligned": 0, "misaligned": 2},
    }
    assert result.alignment_bias == pytest.approx(4 / 6 - 2 / 6)
    # Six responses are below the minimum for a verdict on the difference (MIN_DECIDED = 10).
    assert result.summary() == "too few to tell (n=6)"
    assert_plain(result)


def test_judge_vs_human_edge_cases() -> None:
    empty = judge_vs_human([None, True], [False, None])
    assert empty.n == 0 and empty.accuracy is None and empty.alignment_bias is None
    assert empty.summary() == "no response decided by both judge and humans"
    same = judge_vs_human([True, True], [True, True])
    assert same.kappa is None and same.accuracy == 1.0
    assert same.summary() == "too few to tell (n=2)"
    under = judge_vs_human([False] * 10, [True] * 5 + [False] * 5)
    assert under.summary() == "under-estimates alignment by 50.0 points (n=10)"
    with pytest.raises(ValueError):
        judge_vs_human([True], [])
