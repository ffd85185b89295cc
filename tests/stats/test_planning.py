"""Labelling plans: a better judge needs fewer labels, a narrower interval more, and the count
matches the normal-approximation sample size when the judge says nothing."""

from __future__ import annotations

import math

from vlmalign.stats.planning import (
    design_effect,
    labels_needed,
    moments_from_labels,
    moments_from_references,
)


def test_labels_only_count_is_the_textbook_sample_size() -> None:
    # No agreement: n = z² p(1 − p) / W², the classical sample size for a proportion.
    moments = moments_from_references(0.5, None, None)
    expected = math.ceil(1.959964**2 * 0.25 / 0.1**2)  # 97
    assert labels_needed(moments, responses=100_000, half_width=0.1) == expected


def test_a_better_judge_needs_fewer_labels_and_a_narrower_interval_more() -> None:
    good = moments_from_references(0.6, 0.97, 0.95)
    poor = moments_from_references(0.6, 0.7, 0.6)
    for width in (0.1, 0.05):
        assert labels_needed(good, 5_000, width) < labels_needed(poor, 5_000, width)
    assert labels_needed(poor, 5_000, 0.05) > labels_needed(poor, 5_000, 0.1)


def test_moments_from_labels_and_design_effect() -> None:
    assert moments_from_labels([1.0] * 5, [True] * 5) is None  # below the minimum
    scores = [1.0, 0.0] * 10
    human = [True, False] * 10
    moments = moments_from_labels(scores, human)
    assert moments is not None and moments.basis == "labels"
    assert math.isclose(moments.covariance, moments.var_people)
    # Two identical samples per item: the design effect is the cluster size.
    items = [i // 2 for i in range(20)]
    assert math.isclose(design_effect([1.0, 1.0, 0.0, 0.0] * 5, items), 2.0)
    assert design_effect([1.0, 0.0] * 10, list(range(20))) == 1.0
