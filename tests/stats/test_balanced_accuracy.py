"""The interval of a judge's balanced accuracy: coverage by simulation with unequal sides and
clustered responses, and worked cases computed by hand from Wilson's formula."""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np
import pytest

from vlmalign.stats import Known, balanced_accuracy_estimate, separation

RUNS = 400
RESAMPLES = 500  # enough for a 95% percentile interval's ends; keeps the simulation fast
#: How often a cluster's further response reuses its first one's draw (the rest are fresh):
#: responses of one item are positively dependent while each keeps its side's accuracy. With
#: stronger dependence (0.5) the 50 + 5 design of the (0.7, 0.5) judge fell to about 92.5%
#: over 14,000 runs: its 5 misaligned answers sit in 4 items, too few for the bootstrap to
#: see the dependence, and Wilson's own coverage for 5 answers at 0.5 is 93.75%.
DEPENDENCE = 0.25


def wilson_low(successes: int, n: int, confidence: float = 0.95) -> float:
    """Lower end of the Wilson (1927) interval, written out from the formula."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


@pytest.fixture
def cached_wilson(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same Wilson intervals, memoised: the simulation asks for the same few thousand
    times, and scipy's `binomtest` is most of the run time."""
    cached = functools.lru_cache(maxsize=None)(separation.wilson_interval)
    monkeypatch.setattr(separation, "wilson_interval", cached)


def perfect(n_aligned: int, n_misaligned: int) -> list[Known]:
    """A judge right on every answer; each answer its own item."""
    return [Known(f"a{i}", True, True) for i in range(n_aligned)] + [
        Known(f"m{i}", False, False) for i in range(n_misaligned)
    ]


def design(n_aligned: int, n_misaligned: int) -> list[tuple[int, int]]:
    """Clusters as (aligned responses, misaligned responses): three items with one answer on
    each side, one item with two misaligned answers, one or two (from 30 aligned answers on)
    items with two aligned ones, and single answers for the rest."""
    shared = [(1, 1)] * 3
    doubled_aligned = [(2, 0)] * (2 if n_aligned >= 30 else 1)
    rest_aligned = n_aligned - 3 - 2 * len(doubled_aligned)
    rest_misaligned = n_misaligned - 3 - 2
    assert rest_aligned >= 0 and rest_misaligned >= 0
    singles = [(1, 0)] * rest_aligned + [(0, 1)] * rest_misaligned
    return shared + doubled_aligned + [(0, 2)] + singles


def simulate(
    clusters: list[tuple[int, int]], accuracy: tuple[float, float], seed: int
) -> tuple[float, float, float]:
    """Coverage of the true balanced accuracy over RUNS studies of the design, and the shares
    of runs where it fell below the interval and above it."""
    sides: list[bool] = []
    owner: list[int] = []
    first: list[int] = []  # index of the cluster's first response (itself for the first)
    for c, (n_aligned, n_misaligned) in enumerate(clusters):
        start = len(sides)
        for expected in [True] * n_aligned + [False] * n_misaligned:
            first.append(start)
            sides.append(expected)
            owner.append(c)
    side = np.array(sides)
    rng = np.random.default_rng(seed)
    draws = rng.random((RUNS, side.size))
    reuse = rng.random((RUNS, side.size)) < DEPENDENCE
    parent = np.array(first)
    # Reusing a uniform draw keeps each response's marginal hit rate, but ties it to its item.
    draws = np.where(reuse & (parent != np.arange(side.size)), draws[:, parent], draws)
    hits = draws < np.where(side, accuracy[0], accuracy[1])
    verdicts = np.where(hits, side, ~side)
    truth = sum(accuracy) / 2
    covered = below = above = 0
    for run in range(RUNS):
        known = [Known(f"i{owner[r]}", sides[r], bool(verdicts[run, r])) for r in range(side.size)]
        result = balanced_accuracy_estimate(known, resamples=RESAMPLES, seed=run)
        assert result.ci_low is not None and result.ci_high is not None
        below += truth < result.ci_low
        above += truth > result.ci_high
        covered += result.ci_low <= truth <= result.ci_high
    return covered / RUNS, below / RUNS, above / RUNS


# Coverage these seeded runs give, in % of 400: covered / truth below the interval / above it.
#   (0.9, 0.6):   50+5 95.5/1.5/3.0,  10+10 98.0/0.25/1.75, 30+8 96.5/1.0/2.5
#   (0.95, 0.95): 50+5 100/0/0,       10+10 99.75/0/0.25,   30+8 100/0/0
#   (0.7, 0.5):   50+5 94.75/1.5/3.75, 10+10 94.5/2.5/3.0,  30+8 94.75/2.25/3.0
# Over 4,000 runs a design the lowest was the (0.7, 0.5) judge on 50+5: 93.4-94.5% (three
# seeds), so that case sits near the bar; the highest, near-perfect judges, 99.5-100%: the
# union of two intervals is conservative there, as Wilson's interval is wide on a small side.
@pytest.mark.parametrize("accuracy", [(0.9, 0.6), (0.95, 0.95), (0.7, 0.5)])
@pytest.mark.parametrize("sides", [(50, 5), (10, 10), (30, 8)])
@pytest.mark.usefixtures("cached_wilson")
def test_interval_covers_the_true_balanced_accuracy(
    accuracy: tuple[float, float], sides: tuple[int, int]
) -> None:
    seed = round(1000 * accuracy[0] + 10 * accuracy[1]) * 10_000 + 100 * sides[0] + sides[1]
    coverage, below, above = simulate(design(*sides), accuracy, seed)
    assert coverage >= 0.93, (coverage, below, above)


def test_perfect_judge_on_fifty_and_three_is_not_vouched_for_by_the_larger_side() -> None:
    # Wilson for 3/3 at 95%: [0.4385, 1]; for 50/50: [0.9287, 1]. Every bootstrap resample is
    # perfect, so the lower end is the square-and-add one.
    assert wilson_low(3, 3) == pytest.approx(0.4385, abs=1e-4)
    expected = 1 - math.sqrt(
        ((1 - wilson_low(50, 50)) / 2) ** 2 + ((1 - wilson_low(3, 3)) / 2) ** 2
    )
    assert expected == pytest.approx(0.717, abs=1e-3)
    result = balanced_accuracy_estimate(perfect(50, 3))
    assert result.balanced_accuracy == 1.0
    assert result.ci_low == pytest.approx(expected, abs=1e-9)
    assert result.ci_high == 1.0
    assert result.ci_low < 0.8  # the pooled Wilson interval of 53/53 said 0.93


def test_perfect_judge_on_one_answer_per_side_is_not_above_chance() -> None:
    # Wilson for 1/1: [0.2065, 1]; both sides alike, so L = 1 - (1 - 0.2065) / sqrt(2).
    expected = 1 - (1 - wilson_low(1, 1)) / math.sqrt(2)
    result = balanced_accuracy_estimate(perfect(1, 1))
    assert result.ci_low == pytest.approx(expected, abs=1e-9)
    assert result.ci_low == pytest.approx(0.439, abs=1e-3)
    assert result.ci_low < 0.5


def test_a_hopeless_judge_mirrors_a_perfect_one() -> None:
    # Wrong on every answer: balanced accuracy 0, the upper end is 1 minus the perfect lower end.
    hopeless = [Known(k.cluster, k.expected, not k.verdict) for k in perfect(50, 3)]
    result = balanced_accuracy_estimate(hopeless)
    assert result.balanced_accuracy == 0.0 and result.ci_low == 0.0
    mirrored = balanced_accuracy_estimate(perfect(50, 3)).ci_low
    assert mirrored is not None and result.ci_high == pytest.approx(1 - mirrored, abs=1e-9)
