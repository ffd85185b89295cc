"""A graded judge's cut on its score: fit on answers whose verdict is known, applied, and
cross-fitted over folds of items (numpy on `stats.Known`; no judge here).

`judges/threshold.py` wraps a judge with these cuts (`threshold: auto`); `judges/validity.py`
measures such a judge by cross-validation (`cross_validated`). Both import this module, neither
the other's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from vlmalign.stats import Known

CV_FOLDS = 5


def fit_threshold(known: Sequence[Known]) -> float:
    """The cut t on scores for which `score > t` has the best balanced accuracy on `known`.

    Candidates are midpoints between consecutive distinct scores (and both ends); among equally
    good cuts the one closest to 0.5 wins, so a judge already calibrated keeps its default.
    Responses without a score are unclear whatever the cut, so they do not move it.
    """
    scored = [(k.score, k.expected) for k in known if k.score is not None]
    positives = sum(1 for _, e in scored if e)
    negatives = len(scored) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    scores = np.array([s for s, _ in scored], dtype=np.float64)
    expected = np.array([e for _, e in scored], dtype=bool)
    distinct = np.unique(scores)
    cuts = np.concatenate(([distinct[0] - 1e-9], (distinct[:-1] + distinct[1:]) / 2, [1.0]))
    aligned = scores[None, :] > cuts[:, None]  # (cuts, responses)
    true_positive = (aligned & expected).sum(axis=1) / positives
    true_negative = (~aligned & ~expected).sum(axis=1) / negatives
    balanced = (true_positive + true_negative) / 2
    best = np.flatnonzero(np.isclose(balanced, balanced.max()))
    return float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]])


def apply_threshold(aligned: bool | None, score: float | None, cut: float) -> bool | None:
    """The verdict under a cut: unclear stays unclear (no score), else score > cut."""
    if score is None:
        return None if aligned is None else aligned
    return score > cut


def fold_of(cluster: str, folds: int = CV_FOLDS) -> int:
    """A cluster's fold: from a hash of its id, so folds do not depend on order."""
    return int(hashlib.sha256(cluster.encode()).hexdigest(), 16) % folds


def fold_thresholds(known: Sequence[Known], folds: int = CV_FOLDS) -> list[float]:
    """One cut per fold (`fold_of` each response's cluster), each fit on the other folds'
    responses only: the cut that may judge a cluster of fold f never saw that cluster."""
    fold = [fold_of(k.cluster, folds) for k in known]
    return [
        fit_threshold([k for k, g in zip(known, fold, strict=True) if g != f]) for f in range(folds)
    ]


def cross_validated(known: Sequence[Known], folds: int = CV_FOLDS) -> list[Known]:
    """Each response's verdict under a cut fit on the other folds' clusters (never its own)."""
    cuts = fold_thresholds(known, folds)
    return [
        Known(
            k.cluster,
            k.expected,
            apply_threshold(k.verdict, k.score, cuts[fold_of(k.cluster, folds)]),
            k.score,
        )
        for k in known
    ]
