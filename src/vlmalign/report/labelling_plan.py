"""`vlmalign labels plan`: how many more human labels each condition needs, per judge."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from vlmalign.judges.human import human_verdicts
from vlmalign.judges.validity import ValidityEntry
from vlmalign.report.analysis import condition_rows
from vlmalign.report.calibration import calibrated_rate, calibration_inputs
from vlmalign.report.judge_validity import validity_entries
from vlmalign.report.run_data import load_run
from vlmalign.stats.planning import (
    Basis,
    design_effect,
    labels_needed,
    moments_from_labels,
    moments_from_references,
)

DEFAULT_WIDTH = 0.10


class PlanRow(BaseModel):
    """One condition and judge: labels now, labels needed for the half-width, and how many more."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: str = Field(description="the condition's name, as in results.json")
    judge: str
    labelled: int
    needed: int = Field(description="labels for the half-width; above `responses`: unreachable")
    more: int = Field(description="still to label (at most the responses not yet labelled)")
    half_width_now: float | None = Field(description="of the calibrated interval today")
    responses: int
    reachable: bool = Field(description="labelling every response would reach the half-width")
    basis: Basis = Field(description="what the judge's agreement with people is taken from")


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    width: float
    plan: list[PlanRow]


def labelling_plan(run_dir: Path, width: float = DEFAULT_WIDTH, judges: Sequence[str] = ()) -> Plan:
    """For every condition and automatic judge of the run's newest finished study (or only
    `judges`), the labels a calibrated 95% interval of half-width `width` needs."""
    run = load_run(run_dir)
    unknown = [j for j in judges if j not in run.verdicts]
    if unknown:
        from vlmalign.errors import VlmalignError

        known = ", ".join(run.judges) or "none"
        raise VlmalignError(f"{run_dir}: no judge {unknown[0]!r} in this run; its judges: {known}")
    human = human_verdicts(run.labels)
    references = _references(validity_entries(run, {}))
    rows = []
    for condition, generations in condition_rows(run.generations).items():
        for judge in judges or run.judges:
            inputs = calibration_inputs(run, judge, generations, human)
            scores, people, items = inputs
            if not scores:
                continue
            labelled = inputs.labelled
            moments = moments_from_labels(scores, people)
            if moments is None:
                # The rate people would give: their labels' so far, else the least favourable.
                given = [float(p) for p in people if p is not None]
                rate = sum(given) / len(given) if given else 0.5
                entry = references.get(judge)
                moments = moments_from_references(
                    rate,
                    entry.aligned_accuracy if entry else None,
                    entry.misaligned_accuracy if entry else None,
                )
            deff = design_effect(scores, items)
            needed = labels_needed(moments, len(scores), width, deff)
            calibrated = calibrated_rate(inputs)
            now = calibrated.half_width if calibrated else None
            rows.append(
                PlanRow(
                    condition=condition.label,
                    judge=judge,
                    labelled=labelled,
                    needed=needed,
                    # Never more than there are: an unreachable width says so in `reachable`.
                    more=max(0, min(needed, len(scores)) - labelled),
                    half_width_now=now,
                    responses=len(scores),
                    reachable=needed <= len(scores),
                    basis=moments.basis,
                )
            )
    return Plan(width=width, plan=rows)


def _references(entries: Sequence[ValidityEntry]) -> dict[str, ValidityEntry]:
    return {e.judge: e for e in entries if e.source == "references"}
