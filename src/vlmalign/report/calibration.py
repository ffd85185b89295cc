"""The rate people would give, per condition and judge: a run's responses as the inputs of
`stats.prediction_powered_rate`, and when such an estimate rests on enough labels to be shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from vlmalign.judges.human import HumanVerdict
from vlmalign.judges.registry import is_graded
from vlmalign.report.run_data import RunData
from vlmalign.schemas.results import CalibratedRecord
from vlmalign.stats import (
    CalibratedDifference,
    CalibratedRate,
    prediction_powered_difference,
    prediction_powered_rate,
)
from vlmalign.stats.minimums import MIN_LABELLED
from vlmalign.store import GenerationRow


class CalibrationInputs(NamedTuple):
    """One condition's judged responses: the judge's score, people's verdict, the item."""

    scores: list[float]
    people: list[bool | None]
    items: list[str]

    @property
    def labelled(self) -> int:
        return sum(p is not None for p in self.people)


def calibration_inputs(
    run: RunData, judge: str, rows: Sequence[GenerationRow], human: dict[str, HumanVerdict]
) -> CalibrationInputs:
    """A condition's responses for the calibrated estimate. A graded judge enters with its score
    (P(aligned)); a yes/no judge with 1 or 0; a response it left unclear with 0, as its accuracy
    counts it. People's verdict is the majority of their labels; unsure majorities and ties
    count as not labelled."""
    verdicts = run.verdicts[judge]
    graded = is_graded(run.provenance.judges.get(judge) or {})
    judged = [r for r in rows if r.key in verdicts]
    scores = []
    for r in judged:
        verdict = verdicts[r.key]
        score = verdict.score if graded and verdict.score is not None else None
        scores.append(float(score) if score is not None else 1.0 if verdict.aligned else 0.0)
    people = [human[r.key].aligned if r.key in human else None for r in judged]
    return CalibrationInputs(scores, people, [r.item_id for r in judged])


def calibrated_rate(inputs: CalibrationInputs) -> CalibratedRate | None:
    """The estimate, or None for a condition without any label."""
    if not inputs.scores or inputs.labelled == 0:
        return None
    return prediction_powered_rate(inputs.scores, inputs.people, inputs.items)


def calibrated_difference(
    a: CalibrationInputs, b: CalibrationInputs
) -> CalibratedDifference | None:
    """B − A in the rates people would give, when both conditions have enough labels."""
    if a.labelled < MIN_LABELLED or b.labelled < MIN_LABELLED:
        return None
    return prediction_powered_difference(a, b)


def calibration_shown(calibrated: CalibratedRate | CalibratedRecord) -> bool:
    """Whether a calibrated estimate rests on enough labels to be written as a figure."""
    return (
        calibrated.n_labelled >= MIN_LABELLED
        and calibrated.labelled_clusters >= 2
        and calibrated.ci_low is not None
    )
