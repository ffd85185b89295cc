"""The cluster bootstrap of `balanced_accuracy_estimate` on `common.bootstrap`: its vectorised
statistics against a plain recomputation on each resample (sklearn for the AUC), and the cases
where an interval is undefined or collapses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vlmalign.stats import Known, balanced_accuracy_estimate
from vlmalign.stats.separation import _balanced_of_sums, _ResampledAuc


def _graded(seed: int, clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores on a coarse grid (many ties), sides and cluster of 1-3 responses a cluster."""
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(clusters), rng.integers(1, 4, size=clusters))
    expected = rng.random(cluster.size) < 0.5
    scores = np.round(np.clip(rng.normal(np.where(expected, 0.6, 0.4), 0.25), 0, 1), 1)
    return scores, expected, cluster


@pytest.mark.parametrize("seed", range(5))
def test_resampled_auc_is_sklearns_auc_of_each_resample(seed: int) -> None:
    scores, expected, cluster = _graded(seed, clusters=12)
    statistic = _ResampledAuc(scores, expected, cluster, 12)
    draws = np.random.default_rng(100 + seed).integers(0, 12, size=(300, 12))
    values = statistic(draws.astype(np.float64))
    assert values.shape == (300,)
    checked = 0
    for draw, value in zip(draws, values, strict=True):
        picked = np.concatenate([np.flatnonzero(cluster == c) for c in draw])
        if len(set(expected[picked])) < 2:
            assert np.isnan(value)  # one side absent: no AUC, left out of the percentiles
            continue
        assert value == pytest.approx(roc_auc_score(expected[picked], scores[picked]), abs=1e-12)
        checked += 1
    assert checked > 250


def test_resampled_auc_of_the_sample_itself_and_of_one_side_only() -> None:
    scores, expected, cluster = _graded(7, clusters=9)
    statistic = _ResampledAuc(scores, expected, cluster, 9)
    everything = np.arange(9, dtype=np.float64)[None, :]
    assert statistic(everything)[0] == pytest.approx(roc_auc_score(expected, scores), abs=1e-12)
    # Cluster 0 holds only aligned answers: drawn every time, there is no misaligned side.
    sides = np.array([True, True, False, True, False])
    statistic = _ResampledAuc(np.linspace(0, 1, 5), sides, np.array([0, 0, 1, 1, 2]), 3)
    values = statistic(np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]]))
    assert np.isnan(values[0])
    assert values[1] == pytest.approx(roc_auc_score(sides, np.linspace(0, 1, 5)), abs=1e-12)


def test_balanced_of_sums_matches_the_counts_of_each_resample() -> None:
    rng = np.random.default_rng(3)
    aligned = rng.integers(0, 3, size=10).astype(float)
    misaligned = rng.integers(0, 3, size=10).astype(float)
    aligned_hits = np.floor(aligned * rng.random(10))
    misaligned_hits = np.floor(misaligned * rng.random(10))
    draws = rng.integers(0, 10, size=(200, 10))
    values = _balanced_of_sums(
        aligned_hits[draws], aligned[draws], misaligned_hits[draws], misaligned[draws]
    )
    for r, draw in enumerate(draws):
        n_a, n_m = aligned[draw].sum(), misaligned[draw].sum()
        if not n_a or not n_m:
            assert np.isnan(values[r])
            continue
        expected = (aligned_hits[draw].sum() / n_a + misaligned_hits[draw].sum() / n_m) / 2
        assert values[r] == pytest.approx(expected, abs=1e-12)


def test_a_perfectly_separating_graded_judge_has_a_collapsed_auc_interval() -> None:
    # Every resample with both sides ranks every aligned answer above every misaligned one.
    known = [
        Known(f"i{n}", side, side, 0.9 if side else 0.1) for n in range(6) for side in (True, False)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's warnings on a collapsed distribution stay inside
        result = balanced_accuracy_estimate(known, graded=True)
    assert (result.auc, result.auc_ci_low, result.auc_ci_high) == (1.0, 1.0, 1.0)
    assert result.balanced_accuracy == 1.0 and result.ci_high == 1.0


def test_no_interval_from_one_cluster_or_one_side() -> None:
    one_cluster = [Known("i", True, True, 0.8), Known("i", False, True, 0.6)]
    result = balanced_accuracy_estimate(one_cluster, graded=True)
    assert result.balanced_accuracy == 0.5 and result.auc == 1.0
    assert (result.ci_low, result.ci_high, result.auc_ci_low, result.auc_ci_high) == (None,) * 4
    one_side = [Known(f"i{n}", True, True, 0.8) for n in range(4)]
    result = balanced_accuracy_estimate(one_side, graded=True)
    assert result.balanced_accuracy is None and result.auc is None
    assert (result.ci_low, result.ci_high, result.auc_ci_low, result.auc_ci_high) == (None,) * 4


def test_the_auc_interval_is_sklearns_over_whole_clusters() -> None:
    # Independent of scipy: the percentile interval of sklearn's AUC over resamples of whole
    # clusters drawn here lands close to the one the estimate reports (another random stream).
    scores, expected, cluster = _graded(11, clusters=30)
    known = [
        Known(f"c{c:02d}", bool(e), None, float(s))
        for c, e, s in zip(cluster, expected, scores, strict=True)
    ]
    result = balanced_accuracy_estimate(known, graded=True, resamples=4_000, seed=1)
    assert result.auc == pytest.approx(roc_auc_score(expected, scores))
    draws = np.random.default_rng(12345).integers(0, 30, size=(2_000, 30))
    values = []
    for draw in draws:
        picked = np.concatenate([np.flatnonzero(cluster == c) for c in draw])
        if len(set(expected[picked])) == 2:
            values.append(roc_auc_score(expected[picked], scores[picked]))
    low, high = np.percentile(values, [2.5, 97.5])
    assert result.auc is not None
    assert result.auc_ci_low is not None and result.auc_ci_high is not None
    assert result.auc_ci_low == pytest.approx(low, abs=0.02)
    assert result.auc_ci_high == pytest.approx(high, abs=0.02)
    assert result.auc_ci_low < result.auc < result.auc_ci_high
