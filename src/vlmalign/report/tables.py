"""The report's tables as rows of text: built once here, rendered by Markdown, HTML and the console.

A result table (the paper's Tables 1 and 2) has one group of columns per run; the other tables
(validity, breakdowns, answer profiles, finetuning loss) are built per run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlmalign.judges.human import HUMAN
from vlmalign.judges.validity import ValidityEntry
from vlmalign.report.analysis import Analysis
from vlmalign.report.conditions import VARIANTS, ConditionKey, sorted_conditions
from vlmalign.report.formatting import (
    MISSING,
    count,
    decimal,
    decimal_interval,
    difference,
    judge_warning,
    p_value,
    percent,
    rate,
)
from vlmalign.report.reference import PAPER_LABEL, reference_for
from vlmalign.report.texts import (
    breakdown_text,
    calibrated_text,
    cell_text,
    comparison_what,
)
from vlmalign.report.usage import usage_shown
from vlmalign.schemas.results import CellRecord, ComparisonRecord, UsageRecord

#: A run's label and its cells.
RunCells = tuple[str, Sequence[CellRecord]]

TABLE1_CONDITIONS = tuple(ConditionKey("base", "train", shots) for shots in (0, 1, 2))
TABLE2_SPLITS = ("train", "test")


# --- the paper's tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class TableCell:
    text: str  # "56% [41%–70%] (n=30)", flagged when the judge is not informative
    note: str | None = None  # what the accuracy leaves out: "3 unclear"
    paper: str | None = None  # the paper's own number for this cell: "paper (MAGMA): 56%"
    calibrated: str | None = None  # the rate people would give: "people: 48% [39%–57%] (12 labels)"

    def full_text(self, paper: bool = False) -> str:
        parts = [self.text]
        if self.calibrated:
            parts.append(self.calibrated)
        if paper and self.paper:
            parts.append(self.paper)
        return "; ".join(parts)


@dataclass(frozen=True)
class TableRow:
    labels: tuple[str, ...]  # the judge, and for Table 2 the model
    cells: tuple[TableCell, ...]  # run-major: every column of run 1, then of run 2, ...


@dataclass(frozen=True)
class ResultTable:
    headings: tuple[str, ...]  # what the row labels are: ("judge",) or ("judge", "model")
    columns: tuple[str, ...]  # one run's columns: ("0-shot train", "1-shot train", ...)
    runs: tuple[str, ...]  # every run has all the columns
    rows: tuple[TableRow, ...]

    def header(self) -> list[str]:
        """One line of column names (prefixed by the run when there are several)."""
        if len(self.runs) <= 1:
            return [*self.headings, *self.columns]
        return [
            *self.headings,
            *(f"{run} {column}" for run in self.runs for column in self.columns),
        ]

    def text_rows(self, paper: bool = False) -> list[list[str]]:
        """Each row as text: a cell, the calibrated estimate beside it when there is one and,
        with `paper`, the paper's number."""
        return [[*row.labels, *(cell.full_text(paper) for cell in row.cells)] for row in self.rows]

    @property
    def calibrated(self) -> bool:
        """Whether any cell has a calibrated estimate (the table then explains it)."""
        return any(cell.calibrated for row in self.rows for cell in row.cells)


def find_cell(
    cells: Sequence[CellRecord], condition: ConditionKey, judge: str
) -> CellRecord | None:
    return next((c for c in cells if c.condition == condition and c.judge == judge), None)


def result_cell(cell: CellRecord | None, table: int) -> TableCell:
    """One cell of the paper's Table `table` (1 or 2), with the paper's own number beside it."""
    if cell is None:
        return TableCell(MISSING)
    reference = reference_for(cell.model, cell.split, cell.shots, cell.judge, table)
    shown = reference is not None and cell.paper_magma_accuracy is not None
    paper = f"{PAPER_LABEL}: {percent(cell.paper_magma_accuracy)}" if shown else None
    return TableCell(cell_text(cell), _left_out(cell), paper, calibrated_text(cell))


def _left_out(cell: CellRecord) -> str | None:
    """What the accuracy leaves out (unclear verdicts; for humans, unsure/ties and unlabelled)."""
    if cell.judge == HUMAN:
        parts = [f"{cell.unclear} unsure/tie"] if cell.unclear else []
        parts += [f"{cell.unlabelled} unlabelled"] if cell.unlabelled else []
        return ", ".join(parts) or None
    return f"{cell.unclear} unclear" if cell.unclear else None


def table1(runs: Sequence[RunCells], judges: Sequence[str]) -> ResultTable:
    """The paper's Table 1: a row per judge, the base model 0/1/2-shot on train."""
    rows = tuple(
        TableRow(
            (judge,),
            tuple(
                result_cell(find_cell(cells, condition, judge), table=1)
                for _, cells in runs
                for condition in TABLE1_CONDITIONS
            ),
        )
        for judge in judges
    )
    columns = tuple(condition.column for condition in TABLE1_CONDITIONS)
    return ResultTable(("judge",), columns, tuple(run for run, _ in runs), rows)


def table2(runs: Sequence[RunCells], judges: Sequence[str]) -> ResultTable:
    """The paper's Table 2: a row per judge and model variant, 0-shot on train and test."""
    present = {cell.model for _, cells in runs for cell in cells}
    models = [model for model in VARIANTS if model in present]
    rows = tuple(
        TableRow(
            (judge, model),
            tuple(
                result_cell(find_cell(cells, ConditionKey(model, split, 0), judge), table=2)
                for _, cells in runs
                for split in TABLE2_SPLITS
            ),
        )
        for judge in judges
        for model in models
    )
    columns = tuple(ConditionKey("base", split, 0).column for split in TABLE2_SPLITS)
    return ResultTable(("judge", "model"), columns, tuple(run for run, _ in runs), rows)


def conditions_table(runs: Sequence[RunCells], judges: Sequence[str]) -> ResultTable:
    """Any design: a row per judge and model variant, a column per (split, shots) present."""
    present = sorted_conditions({cell.condition for _, cells in runs for cell in cells})
    columns = list(dict.fromkeys((c.split, c.shots) for c in present))
    variants = list(dict.fromkeys(c.model for c in present))
    rows = tuple(
        TableRow(
            (judge, variant),
            tuple(
                result_cell(find_cell(cells, ConditionKey(variant, split, shots), judge), table=0)
                for _, cells in runs
                for split, shots in columns
            ),
        )
        for judge in judges
        for variant in variants
    )
    labels = tuple(ConditionKey("base", split, shots).column for split, shots in columns)
    return ResultTable(("judge", "model"), labels, tuple(run for run, _ in runs), rows)


def pruned(table: ResultTable) -> ResultTable:
    """The table without rows or (per-run) columns made only of missing cells."""
    per_run = len(table.columns)
    keep = [
        j
        for j in range(per_run)
        if any(
            row.cells[r * per_run + j].text != MISSING
            for row in table.rows
            for r in range(len(table.runs))
        )
    ]
    rows = []
    for row in table.rows:
        cells = tuple(row.cells[r * per_run + j] for r in range(len(table.runs)) for j in keep)
        if any(cell.text != MISSING for cell in cells):
            rows.append(TableRow(row.labels, cells))
    return ResultTable(
        table.headings, tuple(table.columns[j] for j in keep), table.runs, tuple(rows)
    )


@dataclass(frozen=True)
class TitledTable:
    key: str  # "table1", "table2" or "conditions": the HTML table's id
    title: str
    table: ResultTable


TABLE1_TITLE = "Table 1: alignment of the base model by number of shots (train split)"
TABLE2_TITLE = "Table 2: base and finetuned model, 0-shot"
CONDITIONS_TITLE = "Results by condition"
PAPER_LAYOUT_CONDITIONS = frozenset(TABLE1_CONDITIONS) | {
    ConditionKey(variant, split, 0) for variant in VARIANTS for split in TABLE2_SPLITS
}


def paper_layout(conditions: Sequence[ConditionKey]) -> bool:
    """Whether the paper's Tables 1/2 hold the design: only their conditions, with the base model
    asked on train with more than one number of shots."""
    present = set(conditions)
    shots = {c.shots for c in present if c in TABLE1_CONDITIONS}
    return present <= PAPER_LAYOUT_CONDITIONS and len(shots) > 1


def result_tables(runs: Sequence[RunCells], judges: Sequence[str]) -> list[TitledTable]:
    """The results as the design asks: the paper's Tables 1 and 2 (Table 2 when a finetuned
    model was asked) where they hold every condition, else one table of every condition; no
    row or column is made only of missing cells."""
    conditions = [cell.condition for _, cells in runs for cell in cells]
    if not paper_layout(conditions):
        return [TitledTable("conditions", CONDITIONS_TITLE, pruned(conditions_table(runs, judges)))]
    tables = [TitledTable("table1", TABLE1_TITLE, pruned(table1(runs, judges)))]
    if any(c.model == "finetuned" for c in conditions):
        tables.append(TitledTable("table2", TABLE2_TITLE, pruned(table2(runs, judges))))
    return tables


# --- paired tests ----------------------------------------------------------------------------

COMPARISON_HEADER = ["judge", "compared", "first", "second", "difference [95% CI]", "p", "p (Holm)"]
COMPARISON_HEADER += ["method", "items"]


def comparison_rows(comparisons: Sequence[ComparisonRecord]) -> list[list[str]]:
    """A paired test per row, within a run or between runs."""
    return [
        [
            c.judge + judge_warning(c.judge_informative),
            comparison_what(c),
            percent(c.accuracy_a),
            percent(c.accuracy_b),
            difference(c.difference, c.ci_low, c.ci_high),
            p_value(c.p_value),
            p_value(c.p_holm),
            c.method,
            str(c.n_items),
        ]
        for c in comparisons
    ]


# --- per run --------------------------------------------------------------------------------

VALIDITY_HEADER = [
    "judge",
    "source",
    "n",
    "balanced accuracy [95% CI]",
    "AUC",
    "on aligned",
    "on misaligned",
    "unclear",
    "informative",
]


def validity_rows(entries: Sequence[ValidityEntry]) -> list[list[str]]:
    return [
        [
            e.judge,
            e.source + (" (optimistic)" if e.optimistic else ""),
            str(e.n),
            decimal_interval(e.balanced_accuracy, e.ci_low, e.ci_high),
            decimal(e.auc),
            percent(e.aligned_accuracy),
            percent(e.misaligned_accuracy),
            str(e.unclear),
            "yes" if e.informative else "no",
        ]
        for e in entries
    ]


@dataclass(frozen=True)
class BreakdownTable:
    run: str
    judge: str
    conditions: list[str]  # column labels
    rows: list[tuple[str, list[str]]]  # group, then a figure per condition


def breakdown_tables(analysis: Analysis, run: str = "") -> list[BreakdownTable]:
    """Per judge: accuracy within each group of items (rows) under each condition (columns)."""
    conditions = sorted_conditions(b.condition for b in analysis.breakdowns)
    tables = []
    for judge in dict.fromkeys(b.judge for b in analysis.breakdowns):
        figures: dict[str, dict[ConditionKey, str]] = defaultdict(dict)
        for b in analysis.breakdowns:
            if b.judge == judge:
                figures[b.group][b.condition] = breakdown_text(b)
        rows = [(group, [by.get(c, MISSING) for c in conditions]) for group, by in figures.items()]
        tables.append(BreakdownTable(run, judge, [c.label for c in conditions], rows))
    return tables


PROFILE_HEADER = ["condition", "says yes", "unclear", "consistency", "inconsistent items"]


@dataclass(frozen=True)
class ProfileRow:
    condition: str
    yes_rate: str  # with its interval
    unclear_rate: str
    consistency: str
    inconsistent_items: list[str]


def profile_rows(analysis: Analysis) -> list[ProfileRow]:
    return [
        ProfileRow(
            condition=p.condition.label,
            yes_rate=rate(p.yes_rate, p.yes_ci_low, p.yes_ci_high),
            unclear_rate=percent(p.unclear_rate),
            consistency=percent(p.consistency),
            inconsistent_items=list(p.inconsistent_items),
        )
        for p in analysis.profiles
    ]


LOSS_HEADER = ["epoch", "mean loss", "seconds"]


def loss_rows(epoch_losses: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [str(e["epoch"]), f"{e['loss']:.4f}", f"{e.get('seconds') or 0:.0f}"] for e in epoch_losses
    ]


USAGE_TITLE = "Responses, tokens and refusals"
USAGE_HEADER = [
    "condition",
    "responses",
    "refused",
    "stopped at max tokens",
    "prompt tokens",
    "completion tokens",
    "served by",
]
USAGE_NOTE = (
    "A refused response is the endpoint's content filter declining to answer; every judge "
    "counts it as unclear."
)


def usage_rows(usage: Sequence[UsageRecord]) -> list[list[str]]:
    """One row per condition; none when the run has nothing to show (`usage_shown`: no token
    counts, refusals or stops at the limit, as from an in-process model)."""
    if not usage_shown(usage):
        return []
    return [
        [
            u.condition.label,
            count(u.responses),
            count(u.refused),
            count(u.length_stops),
            count(u.prompt_tokens),
            count(u.completion_tokens),
            ", ".join(u.served_by) or MISSING,
        ]
        for u in usage
    ]
