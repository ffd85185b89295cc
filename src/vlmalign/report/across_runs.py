"""Several runs compared: a leaderboard, and paired tests between runs on the items they share.

Runs are compared condition by condition (same model variant, split and shots) and judge by
judge, on the items both runs asked (by item id). Runs over different datasets share only the
item ids they have in common, and the report says how many. Holm's correction is over each
judge's family of between-run tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from vlmalign.judges.human import HUMAN
from vlmalign.report.analysis import Analysis, item_outcomes, paired_record
from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.report.formatting import MISSING
from vlmalign.report.texts import calibrated_text, cell_text
from vlmalign.schemas.results import CellRecord, ComparisonRecord, SharedItemsRecord
from vlmalign.stats import compare_paired, holm_adjust


@dataclass(frozen=True)
class LeaderRow:
    """One run's model variant under one judge: a figure per condition."""

    judge: str
    run: str
    model: str  # the model's name (`openai:gpt-4o`, `mini`)
    variant: str  # base / finetuned
    cells: tuple[str, ...]  # one per leaderboard column; MISSING where the run lacks it


@dataclass(frozen=True)
class Leaderboard:
    columns: tuple[str, ...]  # "0-shot test", ...: the conditions' split and shots
    rows: tuple[LeaderRow, ...]

    HEADER = ("judge", "run", "model", "variant")

    def header(self) -> list[str]:
        return [*self.HEADER, *self.columns]

    def text_rows(self) -> list[list[str]]:
        return [[r.judge, r.run, r.model, r.variant, *r.cells] for r in self.rows]


@dataclass(frozen=True)
class AcrossRuns:
    leaderboard: Leaderboard
    comparisons: list[ComparisonRecord]
    shared: list[SharedItemsRecord]  # what two runs have in common, per pair


def _items(analysis: Analysis) -> set[str]:
    return {g.item_id for g in analysis.run.generations}


def _judges(analyses: Sequence[Analysis]) -> list[str]:
    return list(dict.fromkeys(j for a in analyses for j in a.judges))


def _cell_text(cell: CellRecord | None) -> str:
    if cell is None:
        return MISSING
    people = calibrated_text(cell)
    return f"{cell_text(cell)}; {people}" if people else cell_text(cell)


def leaderboard(analyses: Sequence[Analysis]) -> Leaderboard:
    """Per judge, one row per run and model variant; a column per (split, shots) any run has."""
    conditions = sorted_conditions({c.condition for a in analyses for c in a.cells})
    columns = list(dict.fromkeys((c.split, c.shots) for c in conditions))
    rows = []
    for judge in _judges(analyses):
        for analysis in analyses:
            variants = dict.fromkeys(c.model for c in analysis.cells if c.judge == judge)
            for variant in variants:
                cells = {
                    (c.split, c.shots): c
                    for c in analysis.cells
                    if c.judge == judge and c.model == variant
                }
                rows.append(
                    LeaderRow(
                        judge,
                        analysis.run.name,
                        analysis.run.provenance.model or "",
                        variant,
                        tuple(_cell_text(cells.get(column)) for column in columns),
                    )
                )
    labels = tuple(ConditionKey("base", split, shots).column for split, shots in columns)
    return Leaderboard(labels, tuple(rows))


def _between(
    a: Analysis, b: Analysis, judge: str, shared: set[str], informative: bool | None
) -> list[ComparisonRecord]:
    """Run b against run a under one judge, in every condition both have, on shared items
    (`p_holm` 1.0 until `across_runs` adjusts it over the judge's family)."""
    found = []
    conditions_a = {c.condition for c in a.cells if c.judge == judge}
    conditions_b = {c.condition for c in b.cells if c.judge == judge}
    for condition in sorted_conditions(conditions_a & conditions_b):
        by_item_a = item_outcomes(a, judge, condition)
        by_item_b = item_outcomes(b, judge, condition)
        result = compare_paired(
            {item: v for item, v in by_item_a.items() if item in shared},
            {item: v for item, v in by_item_b.items() if item in shared},
        )
        if result is None:
            continue
        found.append(
            paired_record(
                judge, condition, condition, result, 1.0, a.run.name, informative, run_b=b.run.name
            )
        )
    return found


def across_runs(analyses: Sequence[Analysis]) -> AcrossRuns:
    """The leaderboard and every pair of runs compared (later run against earlier one)."""
    comparisons: list[ComparisonRecord] = []
    shared_items = []
    for a, b in combinations(analyses, 2):
        items_a, items_b = _items(a), _items(b)
        shared = items_a & items_b
        same = a.run.provenance.dataset_sha256 == b.run.provenance.dataset_sha256
        shared_items.append(
            SharedItemsRecord(
                run_a=a.run.name,
                run_b=b.run.name,
                same_dataset=same,
                shared=len(shared),
                items_a=len(items_a),
                items_b=len(items_b),
            )
        )
        for judge in _judges([a, b]):
            if judge not in a.judges or judge not in b.judges:
                continue
            # A judge not informative in either run is flagged: the weaker reading stands.
            flag = (
                None
                if judge == HUMAN
                else a.informative.get(judge, True) and b.informative.get(judge, True)
            )
            comparisons += _between(a, b, judge, shared, flag)
    by_judge: dict[str, list[int]] = {}
    for index, comparison in enumerate(comparisons):
        by_judge.setdefault(comparison.judge, []).append(index)
    for indices in by_judge.values():
        adjusted = holm_adjust([comparisons[i].p_value for i in indices])
        for i, p in zip(indices, adjusted, strict=True):
            comparisons[i] = comparisons[i].model_copy(update={"p_holm": p})
    return AcrossRuns(leaderboard(analyses), comparisons, shared_items)
