"""How the report writes numbers and conditions, against values written out by hand."""

from __future__ import annotations

from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.report.formatting import (
    decimal,
    decimal_interval,
    difference,
    estimate,
    judge_warning,
    p_statement,
    p_value,
    percent,
    points,
    rate,
)


def test_shares_and_their_intervals() -> None:
    assert percent(0.564) == "56%"
    assert percent(None) == "–"
    assert rate(0.5, 0.4, 0.6) == "50% [40%–60%]"
    assert rate(0.5, None, None) == "50%"
    assert estimate(0.5, 0.4, 0.6, 30) == "50% [40%–60%] (n=30)"
    assert estimate(0.5, 0.4, 0.6, 0) == "–"  # nothing measured
    assert estimate(None, None, None, 12) == "–"
    assert difference(0.2, 0.04, 0.35) == "+20% [+4%, +35%]"
    assert difference(-0.1, -0.25, 0.05) == "-10% [-25%, +5%]"
    assert points(0.125, 0.03, 0.21) == "+12.5 points [+3.0, +21.0]"
    assert points(-0.05, None, None) == "-5.0 points"


def test_scores_and_p_values() -> None:
    assert decimal(0.714) == "0.71"
    assert decimal_interval(0.71, 0.62, 0.8) == "0.71 [0.62, 0.80]"
    assert decimal_interval(0.71, None, 0.8) == "0.71"
    assert decimal_interval(None, None, None) == "–"
    assert p_value(0.0123) == "0.012" and p_value(0.0004) == "<0.001"
    assert p_statement(0.0123) == "p = 0.012" and p_statement(0.0004) == "p < 0.001"


def test_only_a_judge_found_not_informative_is_flagged() -> None:
    assert judge_warning(False) == " ⚠ judge not informative"
    assert judge_warning(True) == "" and judge_warning(None) == ""


def test_a_condition_has_one_label_and_one_order() -> None:
    condition = ConditionKey("base", "train", 1)
    assert condition == ("base", "train", 1)  # stored and written as a plain tuple
    assert condition.label == "base 1-shot train"
    assert condition.column == "1-shot train"
    assert condition.tick == "base\n1-shot\ntrain"
    shuffled = [
        ("finetuned", "test", 0),
        ("base", "test", 0),
        ("base", "train", 2),
        ("finetuned", "train", 0),
        ("base", "train", 0),
        ("base", "train", 1),
        ("base", "train", 0),  # a repeat is listed once
    ]
    assert [c.label for c in sorted_conditions(shuffled)] == [
        "base 0-shot train",
        "base 1-shot train",
        "base 2-shot train",
        "base 0-shot test",
        "finetuned 0-shot train",
        "finetuned 0-shot test",
    ]


def test_other_splits_and_variants_sort_after_the_papers() -> None:
    rows = [("lora", "test", 2), ("base", "validation", 0), ("finetuned", "test", 0)]
    assert [c.label for c in sorted_conditions([*rows, ("base", "train", 0)])] == [
        "base 0-shot train",
        "base 0-shot validation",
        "finetuned 0-shot test",
        "lora 2-shot test",
    ]
