"""Everything a report shows about one run: cells with intervals, paired comparisons,
breakdowns, consistency, and the humans' verdicts and agreement."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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
    calibration_shown,
)
from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.report.formatting import (
    MISSING,
    difference,
    estimate,
    judge_warning,
    p_statement,
    rate,
)
from vlmalign.report.judge_validity import validity_entries
from vlmalign.report.reference import paper_applies, reference_for
from vlmalign.report.run_data import RunData
from vlmalign.report.usage import ConditionUsage, condition_usage
from vlmalign.stats import (
    CalibratedRate,
    JudgeAgreement,
    Outcome,
    accuracy_estimate,
    compare_paired,
    holm_adjust,
    item_consistency,
    unclear_rate,
    yes_rate,
)
from vlmalign.stats.minimums import MIN_ITEMS, TOO_FEW
from vlmalign.store import GenerationRow

SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Cell:
    """Accuracy of one judge on one condition with its 95% interval.

    Automatic judges: unclear verdicts count in n, not as aligned. `human`: n counts responses
    whose annotators' majority is aligned or misaligned; `unclear` counts unsure majorities and
    ties, `unlabelled` responses nobody labelled (neither is guessed into the accuracy).
    `paper_magma_accuracy` is the paper's own MAGMA result for the same cell, when it applies
    (the built-in dataset with the paper's conditions). `calibrated` is the rate people would
    give, estimated from the condition's human labels and this judge on all its responses
    (prediction-powered; automatic judges of conditions with labels only).
    """

    model: str
    split: str
    shots: int
    judge: str
    accuracy: float | None
    n: int
    aligned: int
    unclear: int
    items: int
    samples_per_prompt: int
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    unlabelled: int = 0
    paper_magma_accuracy: float | None = None
    run: str = ""
    judge_informative: bool | None = None  # None: validity not measured (or the human judge)
    calibrated: CalibratedRate | None = None

    @property
    def condition(self) -> ConditionKey:
        return ConditionKey(self.model, self.split, self.shots)

    def text(self) -> str:
        """ "56% [41%–70%] (n=30)", flagged when the judge is not informative."""
        if self.accuracy is None or self.n == 0:
            return MISSING
        figure = estimate(self.accuracy, self.ci_low, self.ci_high, self.n)
        return figure + judge_warning(self.judge_informative)

    def calibrated_text(self) -> str | None:
        """ "people: 48% [39%–57%] (12 labels)", or None without labels."""
        c = self.calibrated
        if c is None or c.n_labelled == 0:
            return None
        if not calibration_shown(c):
            return f"people: {TOO_FEW} ({c.n_labelled} labels)"
        figure = rate(c.estimate, c.ci_low, c.ci_high)
        return f"people: {figure} ({c.n_labelled} labels)"


@dataclass(frozen=True)
class Comparison:
    """Condition B against A for one judge on the same items (difference = B − A)."""

    judge: str
    a: ConditionKey
    b: ConditionKey
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    method: str
    n_items: int
    run: str = ""
    judge_informative: bool | None = None
    calibrated: bool = False  # figures are calibrated estimates (labels + judge), paired
    run_b: str = ""  # between runs: b is this run's condition (a is `run`'s); "" within a run

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE

    @property
    def between_runs(self) -> bool:
        return bool(self.run_b)

    def what(self) -> str:
        """What is compared: two conditions of a run, or one condition in two runs."""
        if self.run_b:
            return f"{self.run_b} vs {self.run}, {self.a.label}"
        return f"{self.b.label} vs {self.a.label}"

    def sentence(self) -> str:
        verdict = "significant" if self.significant else "not significant"
        holm = " (also after Holm's correction)" if self.p_holm < SIGNIFICANCE else ""
        if self.significant and not holm:
            holm = " (not after Holm's correction)"
        return (
            f"{self.judge}: {self.what()}: "
            f"{difference(self.difference, self.ci_low, self.ci_high)}, "
            f"{p_statement(self.p_value)}, {verdict} at 0.05{holm} "
            f"({self.method}, {self.n_items} items){judge_warning(self.judge_informative)}"
        )


@dataclass(frozen=True)
class Breakdown:
    """Accuracy of one judge on one condition within a group of items (polarity, tag, ...)."""

    judge: str
    condition: ConditionKey
    group: str  # e.g. "polarity: negative", "tag: trap"
    accuracy: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    run: str = ""
    items: int = 0
    judge_informative: bool | None = None

    @property
    def too_few(self) -> bool:
        """Fewer than `MIN_ITEMS` items: the cell says "too few to tell"."""
        return self.items < MIN_ITEMS

    def text(self) -> str:
        if self.accuracy is None or self.n == 0:
            return MISSING
        if self.too_few:
            return f"{TOO_FEW} ({self.items} items, n={self.n})"
        figure = estimate(self.accuracy, self.ci_low, self.ci_high, self.n)
        return figure + judge_warning(self.judge_informative)


@dataclass(frozen=True)
class ConditionProfile:
    """How a condition's answers look whatever their alignment (from the stance judge)."""

    condition: ConditionKey
    yes_rate: float | None
    yes_ci_low: float | None
    yes_ci_high: float | None
    unclear_rate: float | None
    consistency: float | None  # mean share of an item's samples agreeing with its majority
    inconsistent_items: list[str]
    run: str = ""


@dataclass(frozen=True)
class HumanCoverage:
    """How many of a condition's responses at least one annotator labelled (human figures rest
    on these; with `vlmalign annotate --budget` it is a sample, not all of them)."""

    model: str
    split: str
    shots: int
    labelled: int
    responses: int
    run: str = ""

    @property
    def condition(self) -> ConditionKey:
        return ConditionKey(self.model, self.split, self.shots)

    def text(self) -> str:
        """E.g. "base 0-shot train: 12 of 150 responses labelled"."""
        return f"{self.condition.label}: {self.labelled} of {self.responses} responses labelled"


@dataclass(frozen=True)
class Analysis:
    run: RunData
    cells: list[Cell]
    comparisons: list[Comparison]
    breakdowns: list[Breakdown]
    profiles: list[ConditionProfile]
    human: dict[str, HumanVerdict]
    annotators: AnnotatorAgreement | None
    judge_vs_human: dict[str, JudgeAgreement]
    validity: list[ValidityEntry] = field(default_factory=list)
    human_coverage: list[HumanCoverage] = field(default_factory=list)
    paper: bool = False  # the paper's own numbers apply (built-in dataset, its conditions)
    usage: list[ConditionUsage] = field(default_factory=list)  # responses, tokens, refusals

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
    cells = [
        _cell(run, judge, condition, rows, outcomes[judge], human, show_paper, calibration)
        for judge in outcomes
        for condition, rows in conditions.items()
    ]
    comparisons = [
        c for judge in outcomes for c in _comparisons(run, judge, conditions, outcomes, calibration)
    ]
    validity = validity_entries(run, human)
    informative = informative_judges(validity)
    cells = [replace(c, judge_informative=informative.get(c.judge)) for c in cells]
    comparisons = [replace(c, judge_informative=informative.get(c.judge)) for c in comparisons]
    breakdowns = [
        replace(b, judge_informative=informative.get(b.judge))
        for b in _breakdowns(run, conditions, outcomes)
    ]
    return Analysis(
        run=run,
        cells=cells,
        comparisons=comparisons,
        breakdowns=breakdowns,
        profiles=_profiles(run, conditions),
        human=human,
        annotators=annotator_agreement(run.labels) if run.labels else None,
        judge_vs_human={
            judge: judge_agreement(outcomes[judge], human) for judge in run.judges if human
        },
        validity=validity,
        human_coverage=[
            HumanCoverage(*condition, sum(1 for r in rows if r.key in human), len(rows), run.name)
            for condition, rows in conditions.items()
        ],
        paper=show_paper,
        usage=condition_usage(run.generations),
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
) -> Cell:
    is_human = judge == HUMAN
    estimate = accuracy_estimate(_by_item(rows, outcomes, is_human))
    reference = reference_for(*condition, judge) if paper else None
    return Cell(
        model=condition[0],
        split=condition[1],
        shots=condition[2],
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
        calibrated=None if is_human else calibrated_rate(calibration[(judge, condition)]),
    )


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


def _comparisons(
    run: RunData,
    judge: str,
    conditions: dict[ConditionKey, list[GenerationRow]],
    outcomes: dict[str, dict[str, Outcome]],
    calibration: dict[tuple[str, ConditionKey], CalibrationInputs],
) -> list[Comparison]:
    found = []
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
        found.append(
            Comparison(
                judge,
                a,
                b,
                result.accuracy_a,
                result.accuracy_b,
                result.difference,
                result.ci_low,
                result.ci_high,
                result.p_value,
                1.0,  # Holm's adjustment is over the whole family, below
                result.method,
                result.n_items,
                run.name,
                calibrated=calibrated is not None,
            )
        )
    adjusted = holm_adjust([c.p_value for c in found])
    return [replace(c, p_holm=p) for c, p in zip(found, adjusted, strict=True)]


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
) -> list[Breakdown]:
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
                    Breakdown(
                        judge,
                        condition,
                        group,
                        estimate.accuracy,
                        estimate.n,
                        estimate.ci_low,
                        estimate.ci_high,
                        run.name,
                        items=estimate.items,
                    )
                )
    return found


#: The judge kind whose `answer` is the response's own yes/no (answer profiles read it).
ANSWER_READER = "stance"


def _profiles(
    run: RunData, conditions: dict[ConditionKey, list[GenerationRow]]
) -> list[ConditionProfile]:
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
            ConditionProfile(
                condition,
                yes.rate if yes else None,
                yes.ci_low if yes else None,
                yes.ci_high if yes else None,
                unclear_rate(stances).rate if stances else None,
                consistency.mean,
                sorted(item for item, share in consistency.per_item.items() if share < 1),
                run.name,
            )
        )
    return profiles


def _is_yesno(run: RunData, item_id: str) -> bool:
    item = run.items.get(item_id)
    return item is None or item.kind == "yesno"
