"""Judge validity: balanced accuracy, AUC, informative, reference answers, auto thresholds."""

from __future__ import annotations

import random

import pytest

from vlmalign.data.dataset import load_dataset
from vlmalign.judges.base import JudgeInput, Verdict
from vlmalign.judges.threshold import (
    CV_FOLDS,
    ThresholdedJudge,
    cross_validated,
    fit_threshold,
    fold_of,
    fold_thresholds,
)
from vlmalign.judges.validity import (
    MIN_PER_SIDE,
    measure,
    primary_entries,
    reference_answers,
    references_validity,
)
from vlmalign.stats import Known, balanced_accuracy_estimate


def test_balanced_accuracy_worked_example() -> None:
    # Aligned side: 3 of 4 right. Misaligned side: 2 of 4 right; the unclear one is a miss.
    known = [
        Known("a", True, True),
        Known("b", True, True),
        Known("c", True, True),
        Known("d", True, False),
        Known("a", False, False),
        Known("b", False, False),
        Known("c", False, True),
        Known("d", False, None),
    ]
    result = balanced_accuracy_estimate(known)
    assert result.aligned_accuracy == pytest.approx(0.75)
    assert result.misaligned_accuracy == pytest.approx(0.5)
    assert result.balanced_accuracy == pytest.approx(0.625)
    assert result.unclear == 1
    assert (result.n, result.n_aligned, result.n_misaligned, result.clusters) == (8, 4, 4, 4)
    assert result.auc is None  # not graded
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low <= 0.625 <= result.ci_high


def test_auc_is_the_mann_whitney_probability() -> None:
    # Positives 0.9, 0.8, 0.4 against negatives 0.3, 0.5, 0.1: 3 + 3 + 2 of 9 pairs ordered.
    scores = [(True, 0.9), (True, 0.8), (True, 0.4), (False, 0.3), (False, 0.5), (False, 0.1)]
    known = [Known(f"i{n}", e, s > 0.5, s) for n, (e, s) in enumerate(scores)]
    assert balanced_accuracy_estimate(known, graded=True).auc == pytest.approx(8 / 9)


def test_a_perfect_judge_on_many_items_is_informative_a_coin_is_not() -> None:
    perfect = [Known(f"i{n}", side, side) for n in range(40) for side in (True, False)]
    entry = measure("perfect", "references", perfect)
    assert entry.balanced_accuracy == 1.0 and entry.informative
    coin = random.Random(0)
    noise = [Known(f"i{n}", side, coin.random() < 0.5) for n in range(40) for side in (True, False)]
    entry = measure("coin", "references", noise)
    assert not entry.informative
    assert entry.ci_low is not None and entry.ci_low <= 0.5


def test_a_perfect_score_on_two_items_is_not_over_trusted() -> None:
    # Every bootstrap resample is perfect, so the lower end is the square-and-add one. Each
    # side is 2/2, whose Wilson lower end is n / (n + z^2) = 2 / 5.8415 = 0.3424 at 95%;
    # L = 1 - sqrt(2 * ((1 - 0.3424) / 2)^2) = 1 - 0.6576 / sqrt(2) = 0.535.
    perfect = [Known(f"i{n}", side, side) for n in range(2) for side in (True, False)]
    result = balanced_accuracy_estimate(perfect)
    assert result.ci_low == pytest.approx(0.535, abs=0.001)
    # Above chance by the interval, but two answers a side are too few to call it informative.
    assert not measure("perfect", "references", perfect).informative


def test_informative_needs_min_per_side_known_answers_on_each_side() -> None:
    def perfect(per_side: int) -> list[Known]:
        return [Known(f"i{n}", side, side) for n in range(per_side) for side in (True, False)]

    assert MIN_PER_SIDE == 5
    short = measure("perfect", "references", perfect(4))
    # 4/4 a side: Wilson's lower end 4 / 7.8415 = 0.510, so L = 1 - 0.490 / sqrt(2) = 0.654.
    assert short.ci_low is not None and short.ci_low > 0.5
    assert (short.n_aligned, short.n_misaligned) == (4, 4) and not short.informative
    enough = measure("perfect", "references", perfect(6))
    assert (enough.n_aligned, enough.n_misaligned) == (6, 6) and enough.informative


def test_informative_agrees_with_the_interval() -> None:
    rng = random.Random(1)
    for trial in range(20):
        skill = rng.random()
        known = [
            Known(f"i{n}", side, side if rng.random() < skill else not side)
            for n in range(30)
            for side in (True, False)
        ]
        entry = measure("j", "references", known)
        assert entry.informative == (entry.ci_low is not None and entry.ci_low > 0.5), trial


def test_auc_only_for_graded_judges() -> None:
    binary = [Known(f"i{n}", s, s, 1.0 if s else 0.0) for n in range(5) for s in (True, False)]
    assert measure("stance", "references", binary).auc is None
    graded = [
        Known(f"i{n}", s, s, 0.6 + n / 20 if s else 0.4 - n / 20)
        for n in range(5)
        for s in (True, False)
    ]
    assert measure("vlm", "references", graded, graded=True).auc == 1.0


def test_fit_threshold_prefers_the_cut_closest_to_one_half_among_the_best() -> None:
    # Cut 0.45 (between 0.2 and 0.7) and cut 0.775 (between 0.75 and 0.8) both give balanced
    # accuracy (1 + 2/3) / 2; 0.45 is closer to 0.5.
    scores = [(True, 0.7), (True, 0.8), (True, 0.9), (False, 0.1), (False, 0.2), (False, 0.75)]
    known = [Known(f"i{n}", e, None, s) for n, (e, s) in enumerate(scores)]
    assert fit_threshold(known) == pytest.approx(0.45)


def test_fit_threshold_moves_a_miscalibrated_cut() -> None:
    # Every score is above 0.5, but aligned answers score higher: the cut lands between them.
    known = [Known(f"a{n}", True, None, 0.9 + n / 100) for n in range(5)]
    known += [Known(f"m{n}", False, None, 0.6 + n / 100) for n in range(5)]
    assert 0.64 < fit_threshold(known) < 0.9


def test_cross_validation_does_not_flatter_a_noise_judge() -> None:
    rng = random.Random(3)
    known = [Known(f"i{n}", side, None, rng.random()) for n in range(60) for side in (True, False)]
    cut = fit_threshold(known)
    in_sample = [Known(k.cluster, k.expected, k.score > cut, k.score) for k in known]
    fit_on_all = balanced_accuracy_estimate(in_sample).balanced_accuracy
    honest = balanced_accuracy_estimate(cross_validated(known)).balanced_accuracy
    assert fit_on_all is not None and honest is not None
    assert honest < fit_on_all
    assert not references_validity("noise", known, auto=True, graded=True).informative


class _Scripted:
    """A graded judge whose score is given per response text."""

    name = "scripted"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def config(self) -> dict[str, object]:
        return {"name": self.name}

    def judge(self, inputs: list[JudgeInput]) -> list[Verdict]:
        return [
            Verdict(aligned=self.scores[i.response] > 0.5, score=self.scores[i.response])
            for i in inputs
        ]


def test_thresholded_judge_applies_its_fitted_cut() -> None:
    judge = ThresholdedJudge(_Scripted({"good": 0.8, "bad": 0.6}))
    with pytest.raises(RuntimeError, match="not fit"):
        judge.judge([JudgeInput(question="q", response="good")])
    judge.fit([Known("a", True, None, 0.8), Known("a", False, None, 0.6)], "two answers")
    verdicts = judge.judge([JudgeInput(question="q", response=r) for r in ("good", "bad")])
    assert [v.aligned for v in verdicts] == [True, False]
    assert judge.config()["threshold_auto"] == {
        "threshold": 0.7,
        "fitted_on": "two answers",
        "fold_thresholds": [0.5 if f == fold_of("a") else 0.7 for f in range(CV_FOLDS)],
        "folds": CV_FOLDS,
    }


def _item_in_fold(fold: int, skip: int = 0) -> str:
    """An item id whose fold is `fold` (the `skip`-th such id)."""
    ids = (f"item{n}" for n in range(1000))
    return [i for i in ids if fold_of(i) == fold][skip]


def test_each_folds_cut_is_fit_on_the_other_folds_only() -> None:
    # Items of folds 1-4 score their ideal answers 0.7 and misaligned ones 0.3; fold 0's items
    # 0.45 and 0.35. On everything the best cut is 0.4 (it alone separates fold 0's answers);
    # fold 0's cut never sees fold 0's answers, so it is the others' midpoint, 0.5 (closest to
    # 0.5 among the equally perfect cuts); folds 1-4 see fold 0's answers: 0.4.
    known = []
    for fold in range(CV_FOLDS):
        ideal, misaligned = (0.45, 0.35) if fold == 0 else (0.7, 0.3)
        for n in range(2):
            item = _item_in_fold(fold, n)
            known += [Known(item, True, None, ideal), Known(item, False, None, misaligned)]
    assert fit_threshold(known) == pytest.approx(0.4)
    cuts = fold_thresholds(known)
    assert cuts == pytest.approx([0.5, 0.4, 0.4, 0.4, 0.4])
    for fold in range(CV_FOLDS):
        others = [k for k in known if fold_of(k.cluster) != fold]
        assert cuts[fold] == pytest.approx(fit_threshold(others))
    # Cross-validation judges each answer with its own fold's cut: fold 0's ideal answers
    # (0.45 < 0.5) are missed, though the cut fit on everything (0.4) gets them right.
    crossed = {(k.cluster, k.expected): k.verdict for k in cross_validated(known)}
    assert crossed[(_item_in_fold(0), True)] is False
    assert crossed[(_item_in_fold(1), True)] is True

    judge = ThresholdedJudge(_Scripted({"ideal": 0.45}))
    assert judge.fit(known, "the answers above") == pytest.approx(0.4)
    fitted = judge.config()["threshold_auto"]
    assert fitted["threshold"] == pytest.approx(0.4)
    assert fitted["fold_thresholds"] == pytest.approx(cuts)
    assert fitted["folds"] == CV_FOLDS
    # The same answer (score 0.45) to an item of fold 0 is judged by fold 0's cut (0.5), never
    # by a cut fit on that item's own answers; to an item of fold 1 by fold 1's (0.4). With no
    # item id, or an item the cuts were not fit on (even one of fold 0), the cut fit on all.
    unseen = _item_in_fold(0, 2)
    ids = [_item_in_fold(0), _item_in_fold(1), "", unseen]
    verdicts = judge.judge([JudgeInput(id=i, question="q", response="ideal") for i in ids])
    assert [v.aligned for v in verdicts] == [False, True, True, True]
    assert judge.cut_for(_item_in_fold(0)) == pytest.approx(0.5)
    assert judge.cut_for(None) == judge.cut_for(unseen) == pytest.approx(0.4)
    assert judge.rethreshold(Verdict(aligned=True, score=0.45), _item_in_fold(0)).aligned is False
    assert judge.rethreshold(Verdict(aligned=None, score=None), _item_in_fold(0)).aligned is None


def test_reference_answers_of_the_builtin_dataset() -> None:
    dataset = load_dataset("builtin:moral-vqa-40", check_images=False)
    references = reference_answers(dataset.items)
    assert len(references) == 80  # every built-in item has both answers
    first = dataset.items[0]
    ideal, misaligned = references[0], references[1]
    assert (ideal.expected, misaligned.expected) == (True, False)
    assert ideal.input.response == first.ideal_answer
    assert misaligned.input.response == first.misaligned_answer
    # Judged as a 0-shot response: the prompt is the question in the Q/A frame, with the image.
    assert ideal.input.prompt == f"Q: {first.question} A:"
    assert ideal.input.image == first.image


def test_people_decide_over_references_when_they_exist() -> None:
    refs = measure("j", "references", [Known("a", True, True), Known("a", False, False)])
    humans = measure("j", "humans", [Known("a", True, False), Known("b", False, True)])
    assert primary_entries([refs])["j"] is refs
    assert primary_entries([refs, humans])["j"] is humans


class _ReadsTheAnswerKey:
    """A judge that calls ideal answers aligned, developed (says its config) on one dataset."""

    name = "keyed"

    def __init__(self, developed_on: list[str]) -> None:
        self.developed = developed_on
        self.ideal: set[str] = set()

    def config(self) -> dict[str, object]:
        return {"name": self.name, "developed_on": self.developed}

    def judge(self, inputs: list[JudgeInput]) -> list[Verdict]:
        return [Verdict(aligned=i.response in self.ideal) for i in inputs]


def test_validity_on_a_dataset_that_shaped_the_judge_is_flagged_optimistic() -> None:
    from vlmalign.validation import validate_judges

    dataset = load_dataset("builtin:moral-vqa-40")
    shaped = _ReadsTheAnswerKey([dataset.sha256])
    fresh = _ReadsTheAnswerKey(["0" * 64])
    for judge in (shaped, fresh):
        judge.ideal = {item.ideal_answer for item in dataset.items}
    entries = validate_judges([shaped, fresh], dataset, progress=False)
    by_flag = [(e.source, e.optimistic) for e in entries]
    assert by_flag == [("references", True), ("references", False)]
    assert "optimistic: this dataset informed" in entries[0].summary()
    assert "optimistic" not in entries[1].summary()
