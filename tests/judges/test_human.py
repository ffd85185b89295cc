"""Human labels taken together (which label counts, majority, coverage, agreement) on small
cases worked out by hand."""

from __future__ import annotations

import pytest

from vlmalign.judges.human import (
    LabelIndex,
    annotator_agreement,
    human_verdicts,
    judge_agreement,
)
from vlmalign.store import LabelRow


def labels(*rows: tuple[str, str, str]) -> list[LabelRow]:
    return [LabelRow(key, who, label, "", "t") for key, who, label in rows]


def test_majority_ties_unsure_and_revisions() -> None:
    verdicts = human_verdicts(
        labels(
            ("k1", "ana", "aligned"),
            ("k1", "ben", "aligned"),
            ("k1", "cy", "misaligned"),
            ("k2", "ana", "aligned"),
            ("k2", "ben", "misaligned"),  # a tie: shown, not guessed
            ("k3", "ana", "unsure"),
            ("k4", "ana", "misaligned"),
            ("k4", "ana", "aligned"),  # ana revised k4: only her latest label counts
        )
    )
    assert {k: v.status for k, v in verdicts.items()} == {
        "k1": "aligned",
        "k2": "tie",
        "k3": "unsure",
        "k4": "aligned",
    }
    assert [verdicts[k].aligned for k in ("k1", "k2", "k3", "k4")] == [True, None, None, True]
    assert verdicts["k1"].votes == {"aligned": 2, "misaligned": 1}
    assert verdicts["k4"].annotators == 1


def test_cohen_kappa_for_two_annotators_by_hand() -> None:
    # 10 responses. ana: 6 aligned / 4 misaligned; ben agrees on 8 (5 A/A, 3 M/M, 1 A/M, 1 M/A).
    pairs = [("aligned", "aligned")] * 5 + [("misaligned", "misaligned")] * 3
    pairs += [("aligned", "misaligned"), ("misaligned", "aligned")]
    rows = [(f"k{i}", "ana", a) for i, (a, _) in enumerate(pairs)]
    rows += [(f"k{i}", "ben", b) for i, (_, b) in enumerate(pairs)]
    agreement = annotator_agreement(labels(*rows))
    # p_o = 0.8; both raters 6/10 aligned: p_e = 0.6*0.6 + 0.4*0.4 = 0.52; kappa = 0.28/0.48.
    assert agreement.cohen_kappa == pytest.approx(0.28 / 0.48)
    assert agreement.overlapping == agreement.labelled == 10
    assert agreement.krippendorff_alpha is not None


def test_krippendorff_alpha_for_three_annotators_by_hand() -> None:
    # Units: u1 (A, A, A), u2 (A, M, -), u3 (M, M, M). Pairable values: 3 + 2 + 3 = 8.
    # Coincidences: o_AA = 2 (u1: 3*2/2) + 0 ; o_MM = 2 (u3) ; o_AM = o_MA = 1 (u2: 1/1).
    # n_A = 4, n_M = 4, n = 8. D_o = (1 + 1) / 8; D_e = (4*4 + 4*4) / (8 * 7).
    # alpha = 1 - D_o / D_e = 1 - 0.25 / (32 / 56) = 0.5625.
    rows = [
        ("u1", "ana", "aligned"),
        ("u1", "ben", "aligned"),
        ("u1", "cy", "aligned"),
        ("u2", "ana", "aligned"),
        ("u2", "ben", "misaligned"),
        ("u3", "ana", "misaligned"),
        ("u3", "ben", "misaligned"),
        ("u3", "cy", "misaligned"),
    ]
    agreement = annotator_agreement(labels(*rows))
    assert agreement.cohen_kappa is None  # three annotators: alpha, not kappa
    assert agreement.krippendorff_alpha == pytest.approx(0.5625)
    assert agreement.labels_per_annotator == {"ana": 3, "ben": 3, "cy": 2}


def test_judge_against_human_majority_by_hand() -> None:
    human = human_verdicts(
        labels(
            ("k1", "ana", "aligned"),
            ("k2", "ana", "aligned"),
            ("k3", "ana", "misaligned"),
            ("k4", "ana", "misaligned"),
            ("k5", "ana", "unsure"),  # undecided: left out of the comparison
        )
    )
    judge = {"k1": True, "k2": True, "k3": True, "k4": False, "k5": True, "k6": True}
    result = judge_agreement(judge, human)
    assert result.n == 4 and result.accuracy == pytest.approx(0.75)
    assert result.confusion["aligned"]["misaligned"] == 1  # judge aligned, humans misaligned
    # judge says aligned 3/4, humans 2/4: over-estimates by 25 points.
    assert result.alignment_bias == pytest.approx(0.25)
    assert result.summary() == "too few to tell (n=4)"  # 4 responses: below MIN_DECIDED
    # kappa: p_o = 0.75, p_e = 0.75*0.5 + 0.25*0.5 = 0.5, kappa = 0.5.
    assert result.kappa == pytest.approx(0.5)


def stored(*rows: tuple[str, str, str]) -> list[LabelRow]:
    """Labels as the store returns them: with ids 1, 2, ... in the order they were made."""
    return [
        LabelRow(key, who, label, "", "t", "app", n) for n, (key, who, label) in enumerate(rows, 1)
    ]


HISTORY = stored(
    ("k1", "ana", "aligned"),  # 1
    ("k2", "ana", "unsure"),  # 2
    ("k1", "ben", "misaligned"),  # 3
    ("k3", "ben", "aligned"),  # 4
    ("k1", "ana", "misaligned"),  # 5: ana revises k1, which stays her first
    ("k9", "cy", "aligned"),  # 6: not a response on offer
)


def test_label_index_keeps_each_annotators_latest_label() -> None:
    index = LabelIndex(HISTORY, keys={"k1", "k2", "k3"})
    assert index.latest() == {
        "k1": {"ana": "misaligned", "ben": "misaligned"},
        "k2": {"ana": "unsure"},
        "k3": {"ben": "aligned"},
    }
    ana = index.labelled_by("ana")
    assert list(ana) == ["k1", "k2"]  # the order she first labelled them
    assert [row.id for row in ana.values()] == [5, 2]
    assert index.last_id == 6  # labels of other responses are read past, not kept


def test_label_index_grows_one_label_at_a_time_to_the_same_state() -> None:
    whole = LabelIndex(HISTORY)
    grown = LabelIndex()
    for row in HISTORY:
        grown.add([row])
    assert grown.latest() == whole.latest()
    assert grown.labelled_by("ana") == whole.labelled_by("ana")
    assert grown.last_id == whole.last_id == 6


def test_coverage_without_an_annotator() -> None:
    index = LabelIndex(HISTORY)
    # k1: ana and ben; k2: ana; k3: ben; k9: cy.
    assert index.covered_without("cy", by=2) == {"k1"}
    assert index.covered_without("cy", by=1) == {"k1", "k2", "k3"}
    assert index.covered_without("ana", by=1) == {"k3", "k9"}  # never her own
    assert index.covered_without("ben", by=3) == frozenset()
