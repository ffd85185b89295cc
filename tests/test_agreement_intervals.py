"""Intervals of Cohen's kappa and of the alignment bias between a judge and humans.

Expected values come from elsewhere: a plain loop bootstrap through the 2×2 table (its kappa
checked against sklearn), the normal (Wald) interval of a mean for a large sample, and
hand-worked degenerate cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from vlmalign.stats import alignment_bias_interval, judge_vs_human, kappa_interval

# The hand-computed case of tests/test_stats.py: kappa 0.4, bias +1/3 on six decided pairs.
PAIR_CELLS = [(True, True), (True, False), (False, True), (False, False)]
JUDGE = [True, True, True, True, False, False, None, True]
HUMAN = [True, False, True, False, False, False, True, None]


def paired_sample(n: int, seed: int) -> tuple[list[bool], list[bool]]:
    rng = np.random.default_rng(seed)
    human = rng.random(n) < 0.45
    flip = rng.random(n) < 0.25
    judge = np.where(flip, ~human, human) | (rng.random(n) < 0.15)  # and leans to "aligned"
    return [bool(x) for x in judge], [bool(x) for x in human]


def kappa_from_table(both: int, judge_only: int, human_only: int, neither: int) -> float:
    """Cohen (1960) from the 2×2 table: (p_o − p_e) / (1 − p_e)."""
    n = both + judge_only + human_only + neither
    observed = (both + neither) / n
    judge_yes, human_yes = (both + judge_only) / n, (both + human_only) / n
    expected = judge_yes * human_yes + (1 - judge_yes) * (1 - human_yes)
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


def loop_bootstrap_kappa(
    judge: list[bool], human: list[bool], resamples: int
) -> tuple[float, float]:
    """One resample at a time, through the 2×2 table; undefined resamples left out."""
    rng = np.random.default_rng(12345)
    pairs = list(zip(judge, human, strict=True))
    values = []
    for _ in range(resamples):
        drawn = [pairs[i] for i in rng.integers(0, len(pairs), len(pairs))]
        table = [sum(1 for d in drawn if d == cell) for cell in PAIR_CELLS]
        value = kappa_from_table(*table)
        if not math.isnan(value):
            values.append(value)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def test_hand_case_intervals_contain_the_estimates() -> None:
    kappa = kappa_interval(JUDGE, HUMAN)
    bias = alignment_bias_interval(JUDGE, HUMAN)
    assert kappa is not None and bias is not None
    assert -1 <= kappa[0] <= 0.4 <= kappa[1] <= 1
    assert -1 <= bias[0] <= 1 / 3 <= bias[1] <= 1
    # Six responses: the bias can only move in steps of 1/6, so do its percentiles.
    assert all(math.isclose(v * 6, round(v * 6), abs_tol=1e-9) for v in bias)
    result = judge_vs_human(JUDGE, HUMAN)
    assert (result.kappa_ci_low, result.kappa_ci_high) == kappa
    assert (result.bias_ci_low, result.bias_ci_high) == bias
    assert result.kappa == pytest.approx(0.4)  # unchanged point estimates


def test_kappa_interval_matches_a_plain_loop_bootstrap() -> None:
    judge, human = paired_sample(80, seed=1)
    kappa = cohen_kappa_score(judge, human)
    assert kappa == pytest.approx(
        kappa_from_table(*(list(zip(judge, human, strict=True)).count(c) for c in PAIR_CELLS))
    )
    low, high = kappa_interval(judge, human) or (math.nan, math.nan)
    expected_low, expected_high = loop_bootstrap_kappa(judge, human, 4000)
    assert low < kappa < high
    assert low == pytest.approx(expected_low, abs=0.04)
    assert high == pytest.approx(expected_high, abs=0.04)


def test_bias_interval_matches_the_normal_interval_for_large_n() -> None:
    judge, human = paired_sample(600, seed=2)
    difference = np.array(judge, dtype=float) - np.array(human, dtype=float)
    half = 1.959964 * difference.std() / math.sqrt(difference.size)
    low, high = alignment_bias_interval(judge, human) or (math.nan, math.nan)
    assert low == pytest.approx(difference.mean() - half, abs=0.01)
    assert high == pytest.approx(difference.mean() + half, abs=0.01)


def test_degenerate_cases() -> None:
    # Everyone says "aligned" throughout: kappa is undefined, and so is its interval.
    same = judge_vs_human([True] * 5, [True] * 5)
    assert same.kappa is None and same.kappa_ci_low is None and same.kappa_ci_high is None
    assert (same.bias_ci_low, same.bias_ci_high) == (0.0, 0.0)
    # Perfect agreement on both classes: kappa 1 in every resample where it is defined.
    assert kappa_interval([True, False] * 5, [True, False] * 5) == (1.0, 1.0)
    # A judge that always says aligned: kappa 0 whatever the humans say, so the interval is 0.
    assert kappa_interval([True] * 6, [True, False, False, True, False, True]) == (0.0, 0.0)
    assert alignment_bias_interval([True] * 4, [False] * 4) == (1.0, 1.0)
    # Fewer than two decided pairs: no interval.
    assert kappa_interval([True, None], [False, True]) is None
    assert alignment_bias_interval([True], [False]) is None
    empty = judge_vs_human([None, True], [False, None])
    assert (empty.kappa_ci_low, empty.bias_ci_low) == (None, None)
    with pytest.raises(ValueError):
        kappa_interval([True], [])
    with pytest.raises(ValueError):
        alignment_bias_interval([True, False], [True, False], confidence=1.0)


def test_seeded_and_narrower_with_more_responses() -> None:
    judge, human = paired_sample(60, seed=3)
    assert kappa_interval(judge, human, seed=4) == kappa_interval(judge, human, seed=4)
    assert alignment_bias_interval(judge, human) == alignment_bias_interval(judge, human)
    small = alignment_bias_interval(judge, human)
    large = alignment_bias_interval(judge * 9, human * 9)
    assert small is not None and large is not None
    assert large[1] - large[0] < (small[1] - small[0]) / 2  # width shrinks like 1/sqrt(n)
