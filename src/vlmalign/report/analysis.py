"""Everything a report shows about one run: cells with intervals, paired comparisons,
breakdowns, consistency, and the humans' verdicts and agreement.

The results are the `results.json` records themselves (`schemas/results.py`), built here once;
`report/texts.py` words them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from vlmalign.data.schema import Item
from vlmalign.judges.human import (
    HUMAN,
    AnnotatorAgreement,
    HumanVerdict,
    annotator_agreement,
    human_verdicts,
    judge_agreement,
)
from vlmalign.judges.validity import ValidityEntry, primary_entries
from vlmalign.report.calibration import (
    CalibrationInputs,
    calibrated_difference,
    calibrated_rate,
    calibration_inputs,
)
from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.report.judge_validity import validity_entries
from vlmalign.report.reference import paper_applies, reference_for
from vlmalign.report.run_data import RunData
from vlmalign.report.usage import condition_usage
from vlmalign.schemas.results import (
    BreakdownRecord,
    CalibratedRecord,
    CellRecord,
    ComparisonRecord,
    HumanCoverageRecord,
    ProfileRecord,
    UsageRecord,
)
from vlmalign.stats import (
    CalibratedDifference,
    CalibratedRate,
    JudgeAgreement,
    Outcome,
    PairedComparison,
    accuracy_estimate,
    compare_paired,
    holm_adjust,
    item_consistency,
    unclear_rate,
    yes_rate,
)
from vlmalign.store import GenerationRow

SIGNIFICANCE = 0.05

#: The name `study.py` imports a cell by (one type: the record).
Cell = CellRecord


@dataclass(frozen=True)
class Analysis:
    """One run and its results. The records are what `results.json` holds; `run`, the human
    verdicts per response, `annotators`, `judge_vs_human` (the results of `judges.human` and
    `stats`, copied into records by `report/results.py`) and `paper` are the report's own."""

    run: RunData
    cells: list[CellRecord]
    comparisons: list[ComparisonRecord]
    breakdowns: list[BreakdownRecord]
    profiles: list[ProfileRecord]
    human: dict[str, HumanVerdict]
    annotators: AnnotatorAgreement | None
    judge_vs_human: dict[str, JudgeAgreement]
    validity: list[ValidityEntry] = field(default_factory=list)
    human_coverage: list[HumanCoverageRecord] = field(default_factory=list)
    paper: bool = False  # the paper's own numbers apply (built-in dataset, its conditions)
    usage: list[UsageRecord] = field(default_factory=list)  # responses, tokens, refusals

    @property
    def judges(self) -> list[str]:
        return self.run.judges + ([HUMAN] if self.human else [])

    @property
    def informative(self) -> dict[str, bool]:
        """Per automatic judge, whether its primary validity entry finds it informative."""
        return informative_judges(self.validity)


def informative_judges(validity: Sequence[ValidityEntry]) -> dict[str, bool]:
    return {judge: e.informative for judge, e in primary_entries(validity).items()}


def analyse(run: RunData, paper: bool = True) -> Analysis:
    """Everything the report shows of `run`; `paper=False` leaves out the paper's numbers
    even where they apply."""
    human = human_verdicts(run.labels)
    outcomes = {judge: _judge_outcomes(run, judge) for judge in run.judges}
    if human:
        outcomes[HUMAN] = {k: v.aligned for k, v in human.items()}
    conditions = condition_rows(run.generations)
    provenance = run.provenance
    show_paper = paper and paper_applies(
        provenance.dataset, provenance.dataset_sha256, list(conditions)
    )
    # Each automatic judge's responses of each condition, read once for cells and comparisons.
    calibration = {
        (judge, condition): calibration_inputs(run, judge, rows, human)
        for judge in run.judges
        for condition, rows in conditions.items()
    }
    validity = validity_entries(run, human)
    informative = informative_judges(validity)
    cells = [
        _cell(
            run,
            judge,
            condition,
            rows,
            outcomes[judge],
            human,
            show_paper,
            calibration,
            informative.get(judge),
        )
        for judge in outcomes
        for condition, rows in conditions.items()
    ]
    comparisons = [
        c
        for judge in outcomes
        for c in _comparisons(run, judge, conditions, outcomes, calibration, informative.get(judge))
    ]
    return Analysis(
        run=run,
        cells=cells,
        comparisons=comparisons,
        breakdowns=_breakdowns(run, conditions, outcomes, informative),
        profiles=_profiles(run, conditions),
        human=human,
        annotators=annotator_agreement(run.labels) if run.labels else None,
        judge_vs_human={
            judge: judge_agreement(outcomes[judge], human) for judge in run.judges if human
        },
        validity=validity,
        human_coverage=[
            HumanCoverageRecord(
                model=condition.model,
                split=condition.split,
                shots=condition.shots,
                labelled=sum(1 for r in rows if r.key in human),
                responses=len(rows),
                run=run.name,
            )
            for condition, rows in conditions.items()
        ],
        paper=show_paper,
        usage=condition_usage(run.generations, run.name),
    )


def _judge_outcomes(run: RunData, judge: str) -> dict[str, Outcome]:
    return {key: row.aligned for key, row in run.verdicts[judge].items()}


def item_outcomes(
    analysis: Analysis, judge: str, condition: ConditionKey
) -> dict[str, list[Outcome]]:
    """One judge's outcomes in one condition of the analysed run, by item (for humans, decided
    responses only): what a paired test between runs compares."""
    rows = [g for g in analysis.run.generations if ConditionKey.of(g) == condition]
    if judge == HUMAN:
        outcomes = {key: verdict.aligned for key, verdict in analysis.human.items()}
    else:
        outcomes = _judge_outcomes(analysis.run, judge)
    return _by_item(rows, outcomes, judge == HUMAN)


def condition_rows(generations: Sequence[GenerationRow]) -> dict[ConditionKey, list[GenerationRow]]:
    grouped: dict[ConditionKey, list[GenerationRow]] = defaultdict(list)
    for row in generations:
        grouped[ConditionKey.of(row)].append(row)
    return {condition: grouped[condition] for condition in sorted_conditions(grouped)}


def _by_item(
    rows: Sequence[GenerationRow], outcomes: dict[str, Outcome], human: bool
) -> dict[str, list[Outcome]]:
    """Outcomes per item; for humans only decided responses (unsure, ties, unlabelled left out)."""
    grouped: dict[str, list[Outcome]] = defaultdict(list)
    for row in rows:
        if row.key not in outcomes:
            continue
        outcome = outcomes[row.key]
        if human and outcome is None:
            continue
        grouped[row.item_id].append(outcome)
    return grouped


def _cell(
    run: RunData,
    judge: str,
    condition: ConditionKey,
    rows: Sequence[GenerationRow],
    outcomes: dict[str, Outcome],
    human: dict[str, HumanVerdict],
    paper: bool,
    calibration: dict[tuple[str, ConditionKey], CalibrationInputs],
    informative: bool | None,
) -> CellRecord:
    is_human = judge == HUMAN
    estimate = accuracy_estimate(_by_item(rows, outcomes, is_human))
    reference = reference_for(*condition, judge) if paper else None
    return CellRecord(
        model=condition.model,
        split=condition.split,
        shots=condition.shots,
        judge=judge,
        accuracy=estimate.accuracy,
        n=estimate.n,
        aligned=estimate.successes,
        unclear=sum(1 for r in rows if r.key in human and human[r.key].aligned is None)
        if is_human
        else estimate.unclear,
        items=estimate.items,
        samples_per_prompt=max(r.sample_index for r in rows) + 1,
        ci_low=estimate.ci_low,
        ci_high=estimate.ci_high,
        ci_method=estimate.method,
        unlabelled=sum(1 for r in rows if r.key not in human) if is_human else 0,
        paper_magma_accuracy=reference.accuracy if reference else None,
        run=run.name,
        judge_informative=informative,
        calibrated=None
        if is_human
        else _calibrated(calibrated_rate(calibration[(judge, condition)])),
    )


def _calibrated(rate: CalibratedRate | None) -> CalibratedRecord | None:
    """The estimate of `stats` as its record (every field copied: one gained or lost fails)."""
    return None if rate is None else CalibratedRecord.model_validate(asdict(rate))


def comparison_pairs(conditions: Sequence[ConditionKey]) -> list[tuple[ConditionKey, ConditionKey]]:
    """The paper's questions: more shots on the base model, and base vs finetuned 0-shot."""
    present = set(conditions)
    pairs = [
        (ConditionKey("base", "train", a), ConditionKey("base", "train", b))
        for a, b in ((0, 1), (0, 2), (1, 2))
    ] + [
        (ConditionKey("base", split, 0), ConditionKey("finetuned", split, 0))
        for split in ("train", "test")
    ]
    return [(a, b) for a, b in pairs if a in present and b in present]


def paired_record(
    judge: str,
    a: ConditionKey,
    b: ConditionKey,
    result: PairedComparison | CalibratedDifference,
    p_holm: float,
    run: str,
    judge_informative: bool | None,
    calibrated: bool = False,
    run_b: str = "",
) -> ComparisonRecord:
    """A paired test as its record: b against a (between runs, `run_b`'s b against `run`'s a);
    `p_holm` adjusted over the test's family by the caller."""
    return ComparisonRecord(
        judge=judge,
        a=a,
        b=b,
        accuracy_a=result.accuracy_a,
        accuracy_b=result.accuracy_b,
        difference=result.difference,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=result.p_value,
        p_holm=p_holm,
        method=result.method,
        n_items=result.n_items,
        run=run,
        judge_informative=judge_informative,
        calibrated=calibrated,
        significant=result.p_value < SIGNIFICANCE,
        run_b=run_b,
    )


def _comparisons(
    run: RunData,
    judge: str,
    conditions: dict[ConditionKey, list[GenerationRow]],
    outcomes: dict[str, dict[str, Outcome]],
    calibration: dict[tuple[str, ConditionKey], CalibrationInputs],
    informative: bool | None,
) -> list[ComparisonRecord]:
    found: list[tuple[ConditionKey, ConditionKey, PairedComparison | CalibratedDifference]] = []
    for a, b in comparison_pairs(list(conditions)):
        is_human = judge == HUMAN
        calibrated = (
            None
            if is_human
            else calibrated_difference(calibration[(judge, a)], calibration[(judge, b)])
        )
        result = calibrated or compare_paired(
            _by_item(conditions[a], outcomes[judge], is_human),
            _by_item(conditions[b], outcomes[judge], is_human),
        )
        if result is None:
            continue
        found.append((a, b, result))
    # Holm's adjustment is over the judge's whole family of comparisons.
    adjusted = holm_adjust([result.p_value for _, _, result in found])
    return [
        paired_record(
            judge,
            a,
            b,
            result,
            p,
            run.name,
            informative,
            calibrated=isinstance(result, CalibratedDifference),
        )
        for (a, b, result), p in zip(found, adjusted, strict=True)
    ]


def item_groups(item: Item) -> list[str]:
    """The breakdown groups an item belongs to: what its aligned answer is (a yes/no item's
    stance, a multiple-choice item's correct option), its polarity, its tags."""
    if item.kind == "choice":
        groups = [f"correct option: {item.answer_letter}"]
    else:
        groups = [f"aligned stance: {item.aligned_stance}"]
    if item.polarity:
        groups.append(f"polarity: {item.polarity}")
    return groups + [f"tag: {tag}" for tag in item.tags]


def _breakdowns(
    run: RunData,
    conditions: dict[ConditionKey, list[GenerationRow]],
    outcomes: dict[str, dict[str, Outcome]],
    informative: dict[str, bool],
) -> list[BreakdownRecord]:
    groups_of = {item_id: item_groups(item) for item_id, item in run.items.items()}
    names = sorted({g for groups in groups_of.values() for g in groups})
    found = []
    for judge, by_key in outcomes.items():
        for condition, rows in conditions.items():
            for group in names:
                chosen = [r for r in rows if group in groups_of.get(r.item_id, ())]
                if not chosen:
                    continue
                estimate = accuracy_estimate(_by_item(chosen, by_key, judge == HUMAN))
                found.append(
                    BreakdownRecord(
                        judge=judge,
                        condition=condition,
                        group=group,  # e.g. "polarity: negative", "tag: trap"
                        accuracy=estimate.accuracy,
                        n=estimate.n,
                        ci_low=estimate.ci_low,
                        ci_high=estimate.ci_high,
                        run=run.name,
                        items=estimate.items,
                        judge_informative=informative.get(judge),
                    )
                )
    return found


#: The judge kind whose `answer` is the response's own yes/no (answer profiles read it).
ANSWER_READER = "stance"


def _profiles(
    run: RunData, conditions: dict[ConditionKey, list[GenerationRow]]
) -> list[ProfileRecord]:
    readers = run.judges_of_kind(ANSWER_READER)  # under any label the study gave it
    stance = run.verdicts[readers[0]] if readers else None
    profiles = []
    for condition, all_rows in conditions.items():
        # Yes/no items only: the stance judge reads no stance in a multiple-choice answer.
        rows = [r for r in all_rows if _is_yesno(run, r.item_id)]
        if not rows:
            continue
        # A refused response (content filter) took no stance: it counts as unclear.
        stances = [
            "unclear" if r.refused else str(stance[r.key].answer)
            for r in rows
            if stance and r.key in stance
        ]
        yes = yes_rate(stances) if stances else None
        by_item = _by_item(rows, {k: v.aligned for k, v in (stance or {}).items()}, False)
        consistency = item_consistency(by_item)
        profiles.append(
            ProfileRecord(
                condition=condition,
                yes_rate=yes.rate if yes else None,
                yes_ci_low=yes.ci_low if yes else None,
                yes_ci_high=yes.ci_high if yes else None,
                unclear_rate=unclear_rate(stances).rate if stances else None,
                # The mean share of an item's samples agreeing with its majority.
                consistency=consistency.mean,
                inconsistent_items=sorted(
                    item for item, share in consistency.per_item.items() if share < 1
                ),
                run=run.name,
            )
        )
    return profiles


def _is_yesno(run: RunData, item_id: str) -> bool:
    item = run.items.get(item_id)
    return item is None or item.kind == "yesno"
