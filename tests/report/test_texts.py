"""How the report words one result record (`report/texts.py`), against sentences written out by
hand, and the records' conditions as `ConditionKey`s whether built or read back from JSON."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vlmalign.report.conditions import ConditionKey
from vlmalign.report.texts import (
    breakdown_text,
    calibrated_text,
    cell_text,
    comparison_sentence,
    comparison_what,
    coverage_text,
    shared_items_sentence,
)
from vlmalign.schemas.results import (
    BreakdownRecord,
    CalibratedRecord,
    CellRecord,
    ComparisonRecord,
    HumanCoverageRecord,
    SharedItemsRecord,
)

BASE_0 = ConditionKey("base", "train", 0)
BASE_1 = ConditionKey("base", "train", 1)


def cell(**fields: Any) -> CellRecord:
    values: dict[str, Any] = dict(
        model="base",
        split="train",
        shots=0,
        judge="stance",
        accuracy=0.5,
        n=30,
        aligned=15,
        unclear=0,
        items=30,
        samples_per_prompt=1,
        ci_low=0.4,
        ci_high=0.6,
        ci_method="wilson",
        unlabelled=0,
        paper_magma_accuracy=None,
        run="r",
        judge_informative=None,
        calibrated=None,
    )
    return CellRecord(**(values | fields))


def calibrated(n_labelled: int, clusters: int) -> CalibratedRecord:
    return CalibratedRecord(
        estimate=0.48,
        ci_low=0.39,
        ci_high=0.57,
        n_labelled=n_labelled,
        n_unlabelled=100,
        lam=0.5,
        method="ppi++",
        labelled_clusters=clusters,
        labels_only_ci_low=0.3,
        labels_only_ci_high=0.66,
        confidence=0.95,
    )


def comparison(**fields: Any) -> ComparisonRecord:
    values: dict[str, Any] = dict(
        judge="stance",
        a=BASE_0,
        b=BASE_1,
        accuracy_a=0.5,
        accuracy_b=0.7,
        difference=0.2,
        ci_low=0.04,
        ci_high=0.35,
        p_value=0.012,
        p_holm=0.036,
        method="mcnemar-exact",
        n_items=30,
        run="r",
        judge_informative=None,
        calibrated=False,
        significant=True,
    )
    return ComparisonRecord(**(values | fields))


def test_a_cell_reads_as_its_figure_flagged_when_the_judge_is_not_informative() -> None:
    assert cell().condition == BASE_0
    assert cell_text(cell()) == "50% [40%–60%] (n=30)"
    assert (
        cell_text(cell(judge_informative=False)) == "50% [40%–60%] (n=30) ⚠ judge not informative"
    )
    assert cell_text(cell(accuracy=None, n=0)) == "–"


def test_the_rate_people_would_give_needs_enough_labels() -> None:
    assert calibrated_text(cell()) is None
    assert calibrated_text(cell(calibrated=calibrated(0, 0))) is None
    assert (
        calibrated_text(cell(calibrated=calibrated(4, 3))) == "people: too few to tell (4 labels)"
    )
    assert (
        calibrated_text(cell(calibrated=calibrated(12, 6))) == "people: 48% [39%–57%] (12 labels)"
    )


def test_a_breakdown_of_few_items_is_too_few_to_tell() -> None:
    values: dict[str, Any] = dict(
        judge="stance",
        condition=BASE_0,
        group="tag: trap",
        accuracy=0.25,
        n=8,
        ci_low=0.07,
        ci_high=0.59,
        run="r",
        items=8,
        judge_informative=None,
    )
    assert breakdown_text(BreakdownRecord(**values)) == "25% [7%–59%] (n=8)"
    few = BreakdownRecord(**(values | {"items": 4}))
    assert breakdown_text(few) == "too few to tell (4 items, n=8)"


def test_a_comparison_reads_as_one_sentence() -> None:
    assert comparison_sentence(comparison()) == (
        "stance: base 1-shot train vs base 0-shot train: +20% [+4%, +35%], p = 0.012, "
        "significant at 0.05 (also after Holm's correction) (mcnemar-exact, 30 items)"
    )
    after_holm = comparison(p_holm=0.06, judge_informative=False)
    assert comparison_sentence(after_holm).endswith(
        "significant at 0.05 (not after Holm's correction) (mcnemar-exact, 30 items)"
        " ⚠ judge not informative"
    )
    not_significant = comparison(p_value=0.3, p_holm=0.6, significant=False)
    assert "p = 0.300, not significant at 0.05 (mcnemar" in comparison_sentence(not_significant)


def test_a_comparison_between_runs_names_both_runs() -> None:
    between = comparison(b=BASE_0, run="old", run_b="new")
    assert comparison_what(between) == "new vs old, base 0-shot train"
    assert comparison_what(comparison()) == "base 1-shot train vs base 0-shot train"


def test_coverage_and_shared_items() -> None:
    coverage = HumanCoverageRecord(
        model="base", split="train", shots=0, labelled=12, responses=150, run="r"
    )
    assert coverage_text(coverage) == "base 0-shot train: 12 of 150 responses labelled"
    shared: dict[str, Any] = dict(run_a="a", run_b="b", shared=30, items_a=30, items_b=30)
    same = SharedItemsRecord(same_dataset=True, **shared)
    assert shared_items_sentence(same) == "`b` and `a` ask the same dataset (30 items)."
    other = SharedItemsRecord(same_dataset=False, **(shared | {"shared": 10, "items_b": 40}))
    assert shared_items_sentence(other) == (
        "`b` and `a` ask different datasets: they are compared on the 10 item ids they share "
        "(40 and 30 items)."
    )


def test_conditions_read_back_from_json_are_condition_keys() -> None:
    """results.json writes a condition as a 3-item array; read back, it labels as built."""
    again = ComparisonRecord.model_validate_json(comparison().model_dump_json())
    assert again == comparison()
    assert isinstance(again.a, ConditionKey) and again.b.label == "base 1-shot train"
    assert comparison().model_dump(mode="json")["a"] == ["base", "train", 0]


def test_a_result_is_not_changed_after_it_is_built() -> None:
    with pytest.raises(ValidationError):
        cell().accuracy = 0.9  # type: ignore[misc]
