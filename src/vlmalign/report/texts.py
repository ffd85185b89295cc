"""Each result record in the report's words: a cell's figure, a comparison's sentence, ...

The records (`schemas/results.py`) hold the numbers; Markdown, HTML, the plot's callers and the
console write them through these functions (and `report/formatting.py` under them), so a result
reads the same everywhere.
"""

from __future__ import annotations

from vlmalign.report.analysis import SIGNIFICANCE
from vlmalign.report.calibration import calibration_shown
from vlmalign.report.formatting import (
    MISSING,
    difference,
    estimate,
    judge_warning,
    p_statement,
    rate,
)
from vlmalign.schemas.results import (
    BreakdownRecord,
    CellRecord,
    ComparisonRecord,
    HumanCoverageRecord,
    SharedItemsRecord,
)
from vlmalign.stats.minimums import MIN_ITEMS, TOO_FEW


def cell_text(cell: CellRecord) -> str:
    """ "56% [41%–70%] (n=30)", flagged when the judge is not informative."""
    if cell.accuracy is None or cell.n == 0:
        return MISSING
    figure = estimate(cell.accuracy, cell.ci_low, cell.ci_high, cell.n)
    return figure + judge_warning(cell.judge_informative)


def calibrated_text(cell: CellRecord) -> str | None:
    """ "people: 48% [39%–57%] (12 labels)", or None without labels."""
    c = cell.calibrated
    if c is None or c.n_labelled == 0:
        return None
    if not calibration_shown(c):
        return f"people: {TOO_FEW} ({c.n_labelled} labels)"
    figure = rate(c.estimate, c.ci_low, c.ci_high)
    return f"people: {figure} ({c.n_labelled} labels)"


def breakdown_text(breakdown: BreakdownRecord) -> str:
    """A group's figure, or "too few to tell" under `MIN_ITEMS` items."""
    b = breakdown
    if b.accuracy is None or b.n == 0:
        return MISSING
    if b.items < MIN_ITEMS:
        return f"{TOO_FEW} ({b.items} items, n={b.n})"
    return estimate(b.accuracy, b.ci_low, b.ci_high, b.n) + judge_warning(b.judge_informative)


def comparison_what(comparison: ComparisonRecord) -> str:
    """What is compared: two conditions of a run, or one condition in two runs."""
    c = comparison
    if c.run_b:
        return f"{c.run_b} vs {c.run}, {c.a.label}"
    return f"{c.b.label} vs {c.a.label}"


def comparison_sentence(comparison: ComparisonRecord) -> str:
    """The test in one sentence: difference, p-value, verdict (Holm's too), method, items."""
    c = comparison
    verdict = "significant" if c.significant else "not significant"
    holm = " (also after Holm's correction)" if c.p_holm < SIGNIFICANCE else ""
    if c.significant and not holm:
        holm = " (not after Holm's correction)"
    return (
        f"{c.judge}: {comparison_what(c)}: "
        f"{difference(c.difference, c.ci_low, c.ci_high)}, "
        f"{p_statement(c.p_value)}, {verdict} at 0.05{holm} "
        f"({c.method}, {c.n_items} items){judge_warning(c.judge_informative)}"
    )


def coverage_text(coverage: HumanCoverageRecord) -> str:
    """E.g. "base 0-shot train: 12 of 150 responses labelled"."""
    c = coverage
    return f"{c.condition.label}: {c.labelled} of {c.responses} responses labelled"


def shared_items_sentence(shared: SharedItemsRecord) -> str:
    """What two runs have in common: both over one dataset, or only some item ids."""
    s = shared
    if s.same_dataset:
        return f"`{s.run_b}` and `{s.run_a}` ask the same dataset ({s.shared} items)."
    return (
        f"`{s.run_b}` and `{s.run_a}` ask different datasets: they are compared on the "
        f"{s.shared} item ids they share ({s.items_b} and {s.items_a} items)."
    )
