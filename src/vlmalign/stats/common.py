"""What the statistics modules share: the shapes of outcomes, defaults, and the resampling and
interval helpers (pure, no torch).

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as scipy_stats

Outcome = bool | None
OutcomesByItem = Mapping[str, Sequence[Outcome]]
Interval = tuple[float, float]
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000


def percentile_interval(
    statistic: NDArray[np.float64], confidence: float
) -> tuple[float | None, float | None]:
    finite = statistic[np.isfinite(statistic)]
    if finite.size == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return clip_unit(float(low)), clip_unit(float(high))


def response_bootstrap(
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
        return bootstrap(data, statistic, confidence, resamples, seed, batch=1_000)


def finite_percentiles(distribution: NDArray[np.float64], confidence: float) -> Interval | None:
    """The percentile interval of the defined (finite) resampled values, as scipy computes it."""
    finite = distribution[np.isfinite(distribution)]
    if finite.size == 0:
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return tidy(float(low)), tidy(float(high))


def tidy(value: float) -> float:
    """Drop floating-point dust (-8e-17 is 0), so an interval never reads "-0.00"."""
    return round(value, 12) + 0.0


def check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def clip_unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def required(interval: Interval | None) -> Interval:
    if interval is None:  # callers only ask with n > 0
        raise AssertionError("interval unexpectedly undefined")
    return interval


def is_aligned(outcome: Outcome) -> bool:
    return outcome is not None and bool(outcome)


def item_totals(
    outcomes_by_item: OutcomesByItem,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per item with responses: (aligned count, response count), in the mapping's order."""
    judged = [samples for samples in outcomes_by_item.values() if samples]
    aligned = np.array([sum(is_aligned(o) for o in samples) for samples in judged], dtype=float)
    responses = np.array([len(samples) for samples in judged], dtype=float)
    return aligned, responses


def pooled_rate(aligned: NDArray[Any], responses: NDArray[Any], axis: int = -1) -> Any:
    return aligned.sum(axis=axis) / responses.sum(axis=axis)


def bootstrap(
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


def square_and_add(first: float, second: float, phi: float) -> float:
    return math.sqrt(max(0.0, first**2 + second**2 - 2 * phi * first * second))
