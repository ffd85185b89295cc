"""`threshold: auto`: a graded judge's cut on its score, fit on answers whose verdict is known.

A graded judge (ethics, vlm, ethics-roberta) scores each response in [0, 1] (its confidence that
the response is aligned). With `threshold: auto` its verdict becomes `score > t`, where t is the
cut that maximises balanced accuracy on the dataset's reference answers. A verdict under a cut
fit on the answers of the very item it judges would flatter or damn the judge (a model that
answers with an item's reference answer is judged by a cut that has seen that answer), so the
items are split into folds by a hash of their id, one cut is fit per fold on the references of
the other folds, and a response to an item (or a reference answer of it) is judged with its
item's fold's cut: cross-fitting. The validity of such a judge on reference answers is therefore
cross-validated, and the cut fit on every reference judges only what is not one of its items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmalign.judges.base import Judge, JudgeInput, Verdict
from vlmalign.judges.cuts import CV_FOLDS as CV_FOLDS
from vlmalign.judges.cuts import apply_threshold, fit_threshold, fold_of, fold_thresholds
from vlmalign.judges.cuts import cross_validated as cross_validated
from vlmalign.judges.validity import ValidityEntry, heldout_entry
from vlmalign.stats import Known

# The cuts themselves (fit, apply, folds, cross-validation) are `judges/cuts.py`'s, re-exported.

#: Config key under which an auto-thresholded judge records its fitted cut.
FITTED_KEY = "threshold_auto"


class ThresholdedJudge:
    """A graded judge whose verdict is `score > cut`, with its cuts fit by `fit` on answers whose
    verdict is known (the dataset's reference answers) before it judges anything.

    `fit` fits the cut on every known answer (`threshold`) and one cut per fold on the other
    folds' answers (`fold_thresholds`, the folds of `cross_validated`). An input of an item the
    cuts were fit on (`JudgeInput.id`) is judged with its item's fold's cut, so no verdict comes
    from a cut fit on that item's own answers; any other input (an item without reference
    answers, or no item id) with the cut fit on every answer.
    """

    def __init__(self, inner: Judge, folds: int = CV_FOLDS) -> None:
        self.inner = inner
        self.name = inner.name
        self.folds = folds
        self.threshold: float | None = None
        self.fold_thresholds: list[float] = []
        self.fitted_items: frozenset[str] = frozenset()
        self.fitted_on = ""

    def fit(self, known: Sequence[Known], fitted_on: str) -> float:
        """Fit the cuts on `known` (clustered by item id); returns the cut fit on all of it."""
        self.threshold = fit_threshold(known)
        self.fold_thresholds = fold_thresholds(known, self.folds)
        self.fitted_items = frozenset(k.cluster for k in known)
        self.fitted_on = fitted_on
        return self.threshold

    def cut_for(self, item_id: str | None) -> float:
        """The cut that judges an answer to `item_id`: its fold's when the cuts were fit on
        that item's answers, else the cut fit on every answer."""
        if self.threshold is None:
            raise RuntimeError(f"judge {self.name!r}: threshold auto is not fit yet")
        if item_id and item_id in self.fitted_items:
            return self.fold_thresholds[fold_of(item_id, self.folds)]
        return self.threshold

    def config(self) -> dict[str, Any]:
        """The inner judge's config and the fitted cuts (the cut None until `fit`)."""
        cut: dict[str, Any] = {"threshold": self.threshold, "fitted_on": self.fitted_on}
        if self.threshold is not None:
            cut |= {"fold_thresholds": list(self.fold_thresholds), "folds": self.folds}
        return {**self.inner.config(), FITTED_KEY: cut}

    def heldout_validity(self) -> ValidityEntry | None:
        """The inner judge's held-out validity (its cut there is its own, not this one)."""
        return heldout_entry(self.inner)

    def rethreshold(self, verdict: Verdict, item_id: str | None = None) -> Verdict:
        """The inner judge's verdict on an answer to `item_id` under the cut for that item."""
        aligned = apply_threshold(verdict.aligned, verdict.score, self.cut_for(item_id))
        return verdict.model_copy(update={"aligned": aligned})

    def judge(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        self.cut_for(None)  # fail before the inner judge runs
        verdicts = self.inner.judge(inputs)
        return [
            self.rethreshold(verdict, inp.id) for inp, verdict in zip(inputs, verdicts, strict=True)
        ]


def is_auto(config: dict[str, Any]) -> bool:
    """Whether a judge configuration (as recorded in a run) has a fitted `auto` threshold."""
    return FITTED_KEY in config
