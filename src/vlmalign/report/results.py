"""`results.json`: the analyses of one or more runs as the typed `schemas.results.Results`.

The cells, comparisons, breakdowns, profiles, coverage, usage and shared items are the
analyses' own records, gathered as they are; people's agreement (`judges.human`, `stats`) is
copied into its records here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from vlmalign.report.across_runs import AcrossRuns
from vlmalign.report.analysis import Analysis
from vlmalign.report.reference import PAPER, PAPER_LABEL, REFERENCE
from vlmalign.schemas.results import (
    AnnotatorAgreementRecord,
    HumanSummary,
    JudgeAgreementRecord,
    PaperReference,
    Results,
    RunValidityEntry,
)


def results_document(analyses: Sequence[Analysis], across: AcrossRuns | None = None) -> Results:
    """The machine-readable contract: cells (with ci_low/ci_high), tests (within each run, then
    between runs), breakdowns, humans (with how many responses of each condition were labelled:
    `human_coverage`), and what each condition's responses cost (`usage`)."""
    between = across.comparisons if across else []
    return Results(
        runs=[a.run.name for a in analyses],
        cells=[c for a in analyses for c in a.cells],
        comparisons=[*(c for a in analyses for c in a.comparisons), *between],
        shared_items=list(across.shared) if across else [],
        breakdowns=[b for a in analyses for b in a.breakdowns],
        profiles=[p for a in analyses for p in a.profiles],
        human_coverage=[c for a in analyses for c in a.human_coverage],
        usage=[u for a in analyses for u in a.usage],
        judge_validity=[
            RunValidityEntry.model_validate({**e.model_dump(), "run": a.run.name})
            for a in analyses
            for e in a.validity
        ],
        human={a.run.name: _human(a) for a in analyses if a.human},
        paper=PaperReference(source=PAPER, label=PAPER_LABEL, cells=list(REFERENCE)),
        provenance=analyses[0].run.provenance
        if len(analyses) == 1
        else {a.run.name: a.run.provenance for a in analyses},
    )


def _human(analysis: Analysis) -> HumanSummary:
    annotators = analysis.annotators
    return HumanSummary(
        annotators=None
        if annotators is None
        else AnnotatorAgreementRecord.model_validate(asdict(annotators)),
        judge_vs_human={
            judge: JudgeAgreementRecord.model_validate(asdict(agreement))
            for judge, agreement in analysis.judge_vs_human.items()
        },
        majority={key: verdict.status for key, verdict in analysis.human.items()},
    )
