"""`results.json`: the analyses of one or more runs as the typed `schemas.results.Results`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from vlmalign.report.across_runs import AcrossRuns
from vlmalign.report.analysis import Analysis
from vlmalign.report.reference import PAPER, PAPER_LABEL, REFERENCE
from vlmalign.report.usage import ConditionUsage
from vlmalign.schemas.results import (
    AnnotatorAgreementRecord,
    BreakdownRecord,
    CellRecord,
    ComparisonRecord,
    HumanCoverageRecord,
    HumanSummary,
    JudgeAgreementRecord,
    PaperCell,
    PaperReference,
    ProfileRecord,
    Results,
    RunValidityEntry,
    SharedItemsRecord,
    UsageRecord,
)


def results_document(analyses: Sequence[Analysis], across: AcrossRuns | None = None) -> Results:
    """The machine-readable contract: cells (with ci_low/ci_high), tests (within each run, then
    between runs), breakdowns, humans (with how many responses of each condition were labelled:
    `human_coverage`), and what each condition's responses cost (`usage`)."""
    between = across.comparisons if across else []
    return Results(
        runs=[a.run.name for a in analyses],
        cells=[CellRecord.model_validate(asdict(c)) for a in analyses for c in a.cells],
        comparisons=[
            ComparisonRecord.model_validate({**asdict(c), "significant": c.significant})
            for c in [*(c for a in analyses for c in a.comparisons), *between]
        ],
        shared_items=[
            SharedItemsRecord.model_validate(asdict(s)) for s in (across.shared if across else [])
        ],
        breakdowns=[
            BreakdownRecord.model_validate(asdict(b)) for a in analyses for b in a.breakdowns
        ],
        profiles=[ProfileRecord.model_validate(asdict(p)) for a in analyses for p in a.profiles],
        human_coverage=[
            HumanCoverageRecord.model_validate(asdict(c))
            for a in analyses
            for c in a.human_coverage
        ],
        usage=[_usage(u, a.run.name) for a in analyses for u in a.usage],
        judge_validity=[
            RunValidityEntry.model_validate({**e.model_dump(), "run": a.run.name})
            for a in analyses
            for e in a.validity
        ],
        human={a.run.name: _human(a) for a in analyses if a.human},
        paper=PaperReference(
            source=PAPER,
            label=PAPER_LABEL,
            cells=[PaperCell.model_validate(asdict(r)) for r in REFERENCE],
        ),
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


def _usage(usage: ConditionUsage, run: str) -> UsageRecord:
    fields = {k: v for k, v in asdict(usage).items() if k != "condition"}
    return UsageRecord.model_validate({**usage.condition._asdict(), **fields, "run": run})
