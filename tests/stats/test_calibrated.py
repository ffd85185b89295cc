"""Prediction-powered rates: against ppi-python (an independent implementation), by coverage
simulations with clustered synthetic studies and biased judges, and on worked cases."""

from __future__ import annotations

import numpy as np
import ppi_py
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmalign.stats import prediction_powered_difference, prediction_powered_rate

Study = tuple[list[float], list[bool | None], list[int], float]


def clustered_study(
    rng: np.random.Generator,
    items: int,
    samples: int,
    labels: int,
    agree: float,
    optimism: float = 0.0,
) -> Study:
    """Items with their own aligned rate (mean 0.6), a judge that agrees with people with
    probability `agree` and also calls a share `optimism` of misaligned responses aligned;
    `labels` responses labelled at random. Returns the true (population) rate last."""
    rate = rng.beta(3, 2, size=items)  # population mean 3 / (3 + 2) = 0.6
    people = rng.random((items, samples)) < rate[:, None]
    judge = np.where(rng.random(people.shape) < agree, people, ~people)
    judge |= ~people & (rng.random(people.shape) < optimism)
    human: list[bool | None] = [None] * people.size
    for i in rng.choice(people.size, labels, replace=False):
        human[i] = bool(people.ravel()[i])
    clusters = np.repeat(np.arange(items), samples).tolist()
    return judge.ravel().astype(float).tolist(), human, clusters, 0.6


def test_matches_ppi_python_on_independent_samples() -> None:
    rng = np.random.default_rng(7)
    labelled, unlabelled = 500, 50_000
    truth = rng.random(labelled + unlabelled) < 0.35
    scores = np.clip(truth * 0.6 + rng.normal(0.2, 0.15, truth.size), 0, 1)
    y = truth[:labelled].astype(float)
    human: list[bool | None] = [bool(v) for v in y] + [None] * unlabelled

    ours = prediction_powered_rate(scores.tolist(), human)

    reference_low, reference_high = ppi_py.ppi_mean_ci(y, scores[:labelled], scores, alpha=0.05)
    assert ours.ci_low == pytest.approx(float(reference_low[0]), abs=0.004)
    assert ours.ci_high == pytest.approx(float(reference_high[0]), abs=0.004)
    assert ours.lam is not None and 0 < ours.lam <= 1
    # With λ fixed to ours, ppi-python's point estimate is ours exactly (same estimator).
    point = ppi_py.ppi_mean_pointestimate(y, scores[:labelled], scores, lam=ours.lam)
    assert ours.estimate == pytest.approx(float(np.ravel(point)[0]), abs=1e-9)
    classical_low, classical_high = ppi_py.classical_mean_ci(y, alpha=0.05)
    assert ours.labels_only_ci_low == pytest.approx(float(classical_low), abs=0.003)
    assert ours.labels_only_ci_high == pytest.approx(float(classical_high), abs=0.003)
    assert (ours.n_labelled, ours.n_unlabelled) == (labelled, unlabelled)


@pytest.mark.parametrize(
    ("items", "samples", "labels", "agree", "optimism"),
    [
        (60, 4, 80, 0.9, 0.1),  # a good judge that flatters the model a little
        (40, 5, 60, 0.75, 0.3),  # a poor, strongly biased judge
        (120, 1, 40, 0.5, 0.0),  # a judge at chance, one sample per item
    ],
)
def test_intervals_cover_the_true_rate(
    items: int, samples: int, labels: int, agree: float, optimism: float
) -> None:
    rng = np.random.default_rng(items * 1000 + labels)
    runs, covered = 400, 0
    for _ in range(runs):
        judge, human, clusters, truth = clustered_study(
            rng, items, samples, labels, agree, optimism
        )
        result = prediction_powered_rate(judge, human, clusters)
        assert result.ci_low is not None and result.ci_high is not None
        covered += result.ci_low <= truth <= result.ci_high
    # 400 runs: a 95% interval's coverage lies in [0.925, 0.975] with probability ~0.98.
    assert 0.92 <= covered / runs <= 0.975


def test_a_good_judge_narrows_the_interval_and_one_at_chance_costs_nothing() -> None:
    rng = np.random.default_rng(3)
    good, chance = [], []
    for _ in range(200):
        judge, human, clusters, _ = clustered_study(rng, 200, 2, 60, agree=0.9)
        result = prediction_powered_rate(judge, human, clusters)
        labels_only = prediction_powered_rate([0.5] * len(judge), human, clusters)
        good.append(_width(result) / _width(labels_only))
        judge, human, clusters, _ = clustered_study(rng, 200, 2, 60, agree=0.5)
        result = prediction_powered_rate(judge, human, clusters)
        labels_only = prediction_powered_rate([0.5] * len(judge), human, clusters)
        chance.append(_width(result) / _width(labels_only))
    assert np.median(good) <= 0.75
    assert max(chance) <= 1.05 + 1e-9
    assert np.median(chance) <= 1.01


def test_weights_correct_an_unequal_sample() -> None:
    """Aligned responses labelled four times as often: the unweighted estimate is biased, the
    weighted one (inverse inclusion probabilities) is not."""
    rng = np.random.default_rng(11)
    weighted, unweighted = [], []
    for _ in range(300):
        people = rng.random(2000) < 0.4
        judge = np.where(rng.random(2000) < 0.8, people, ~people).astype(float)
        chance = np.where(people, 0.08, 0.02)
        picked = rng.random(2000) < chance
        human = [bool(p) if s else None for p, s in zip(people, picked, strict=True)]
        weights = (1 / chance).tolist()
        weighted.append(prediction_powered_rate(judge.tolist(), human, weights=weights).estimate)
        unweighted.append(prediction_powered_rate(judge.tolist(), human).estimate)
    assert np.mean(weighted) == pytest.approx(0.4, abs=0.01)
    assert np.mean(unweighted) > 0.5


def test_worked_cases() -> None:
    # Every response labelled: the labels' own mean, whatever the judge says.
    everything = prediction_powered_rate([1.0, 1.0, 0.0, 1.0], [True, False, False, True])
    assert everything.estimate == pytest.approx(0.5)
    assert everything.n_unlabelled == 0
    # No label: no estimate.
    nothing = prediction_powered_rate([1.0, 0.0], [None, None])
    assert (nothing.estimate, nothing.ci_low, nothing.n_labelled) == (None, None, 0)
    # A judge that is right on every label, 1 of 4 labels aligned, 3 of 12 scored aligned:
    # the judge's rate, 25%, and an interval that is not a point.
    judge = [1.0, 0.0, 0.0, 0.0] * 3
    human: list[bool | None] = [True, False, False, False] + [None] * 8
    agreeing = prediction_powered_rate(judge, human)
    assert agreeing.estimate == pytest.approx(0.25)
    assert agreeing.ci_low is not None and agreeing.ci_high is not None
    assert agreeing.ci_low < 0.25 < agreeing.ci_high


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prediction_powered_rate([1.5], [True])
    with pytest.raises(ValueError, match="length"):
        prediction_powered_rate([1.0, 0.0], [True])
    with pytest.raises(ValueError, match="positive"):
        prediction_powered_rate([1.0, 0.0], [True, False], weights=[1.0, 0.0])


def test_paired_difference_covers_and_is_paired() -> None:
    rng = np.random.default_rng(5)
    covered, runs = 0, 300
    for _ in range(runs):
        items, samples = 50, 3
        rate = rng.beta(2, 2, size=items)
        a_people = rng.random((items, samples)) < rate[:, None]
        b_people = rng.random((items, samples)) < np.clip(rate + 0.1, 0, 1)[:, None]
        conditions = []
        for people in (a_people, b_people):
            judge = np.where(rng.random(people.shape) < 0.85, people, ~people).astype(float)
            human: list[bool | None] = [None] * people.size
            for i in rng.choice(people.size, 50, replace=False):
                human[i] = bool(people.ravel()[i])
            clusters = np.repeat(np.arange(items), samples).tolist()
            conditions.append((judge.ravel().tolist(), human, clusters))
        result = prediction_powered_difference(conditions[0], conditions[1])
        assert result is not None
        truth = float(np.mean(np.clip(rate + 0.1, 0, 1)) - np.mean(rate))
        covered += result.ci_low <= truth <= result.ci_high
    assert 0.92 <= covered / runs <= 0.985


def test_identical_conditions_do_not_differ() -> None:
    judge = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    human: list[bool | None] = [True, False, None, True, None, True]
    clusters = [0, 0, 1, 1, 2, 2]
    result = prediction_powered_difference((judge, human, clusters), (judge, human, clusters))
    assert result is not None
    assert result.difference == pytest.approx(0.0)
    assert result.p_value == pytest.approx(1.0)


def _width(result: object) -> float:
    low, high = result.ci_low, result.ci_high  # type: ignore[attr-defined]
    return float(high - low)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1),  # the judge's score
            st.sampled_from([True, False, None]),  # people's verdict, None = not labelled
            st.integers(0, 6),  # the item
        ),
        min_size=1,
        max_size=60,
    )
)
def test_any_input_gives_a_rate_inside_its_interval(
    rows: list[tuple[float, bool | None, int]],
) -> None:
    judge = [r[0] for r in rows]
    human = [r[1] for r in rows]
    clusters = [r[2] for r in rows]
    result = prediction_powered_rate(judge, human, clusters)
    labelled = [h for h in human if h is not None]
    assert result.n_labelled == len(labelled)
    assert result.n_unlabelled == len(rows) - len(labelled)
    if not labelled:
        assert result.estimate is None and result.ci_low is None
        return
    assert result.estimate is not None and 0 <= result.estimate <= 1
    assert result.lam is not None and 0 <= result.lam <= 1
    if result.ci_low is not None and result.ci_high is not None:
        assert 0 <= result.ci_low <= result.estimate <= result.ci_high <= 1
        assert result.ci_high > result.ci_low  # never a point, whatever the labels
    if result.n_unlabelled == 0:  # every response labelled: the labels' own mean
        assert result.estimate == pytest.approx(sum(labelled) / len(labelled))
