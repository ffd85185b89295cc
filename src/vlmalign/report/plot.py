"""The accuracy plot: one panel per judge, one bar per run and condition, with 95% intervals
and the paper's own MAGMA numbers as separate markers (rendered to PNG, no pyplot state)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from vlmalign.report.analysis import Cell
from vlmalign.report.calibration import calibration_shown
from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.report.formatting import NOT_INFORMATIVE, percent
from vlmalign.report.reference import PAPER_LABEL

MAX_WIDTH = 13.0  # inches: wider figures get too small once the page scales them down
MAX_COLUMNS = 3
PANEL_WIDTH_PER_CONDITION = 0.6  # inches; keeps bar groups readable with 2 runs
RUN_COLOURS = ("#3b6ea8", "#e08a2c", "#5a9e5a", "#b5517a", "#7d6bb0", "#8c8c8c")
PAPER_COLOUR = "#111111"
PEOPLE_COLOUR = "#c2410c"


def accuracy_png(runs: Mapping[str, Sequence[Cell]], dpi: int = 110) -> bytes:
    """PNG of accuracy by condition, one panel per judge; `runs` maps a run's label to its cells."""
    judges = _unique(cell.judge for cells in runs.values() for cell in cells)
    conditions = sorted_conditions(cell.condition for cells in runs.values() for cell in cells)
    panel_width = max(3.2, 1.0 + len(conditions) * PANEL_WIDTH_PER_CONDITION * len(runs) ** 0.5)
    columns = max(1, min(len(judges), MAX_COLUMNS, int(MAX_WIDTH // panel_width)))
    rows = max(1, math.ceil(len(judges) / columns))
    # Constrained layout leaves room for the legend placed outside the panels.
    figure = Figure(
        figsize=(columns * panel_width, rows * 3.4 + 0.5), dpi=dpi, layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for index, (ax, judge) in enumerate(zip(axes, judges, strict=False)):
        _panel(ax, judge, conditions, runs)
        if index % columns == 0:
            ax.set_ylabel("accuracy (aligned share)", fontsize=9)
    for ax in axes[len(judges) :]:
        ax.set_visible(False)
    if not judges:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no verdicts", ha="center", va="center")
    _legend(figure, list(runs), any_paper=_has_paper(runs), any_people=_has_people(runs))
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))  # first-seen order


def _panel(
    ax: Axes, judge: str, conditions: Sequence[ConditionKey], runs: Mapping[str, Sequence[Cell]]
) -> None:
    width = 0.8 / max(1, len(runs))
    for index, cells in enumerate(runs.values()):
        by_condition = {c.condition: c for c in cells if c.judge == judge}
        offset = (index - (len(runs) - 1) / 2) * width
        for position, condition in enumerate(conditions):
            cell = by_condition.get(condition)
            if cell is not None and cell.accuracy is not None:
                _bar(ax, position + offset, width, cell, RUN_COLOURS[index % len(RUN_COLOURS)])
                _people(ax, position + offset + width * 0.3, cell)
    papers = {
        c.condition: c.paper_magma_accuracy
        for cells in runs.values()
        for c in cells
        if c.judge == judge and c.paper_magma_accuracy is not None
    }
    for position, condition in enumerate(conditions):
        paper = papers.get(condition)
        if paper is not None:
            ax.plot(
                position,
                paper,
                marker="D",
                markersize=7,
                color=PAPER_COLOUR,
                markerfacecolor="white",
                markeredgewidth=1.6,
                zorder=4,
            )
    flagged = any(
        c.judge == judge and c.judge_informative is False for cells in runs.values() for c in cells
    )
    title = judge + (f"\n({NOT_INFORMATIVE})" if flagged else "")
    ax.set_title(title, fontsize=11, fontweight="bold", color="#b45309" if flagged else "black")
    ax.set_xticks(range(len(conditions)), [c.tick for c in conditions], fontsize=8)
    ax.set_xlim(-0.6, len(conditions) - 0.4)
    ax.set_ylim(0, 1.08)  # headroom for the value labels above a 100% bar
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.tick_params(axis="y", labelleft=True)  # sharey hides them on inner panels
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _bar(ax: Axes, x: float, width: float, cell: Cell, colour: str) -> None:
    accuracy = float(cell.accuracy or 0.0)
    ax.bar(x, accuracy, width * 0.92, color=colour, alpha=0.85)
    if cell.ci_low is not None and cell.ci_high is not None:
        below, above = max(0.0, accuracy - cell.ci_low), max(0.0, cell.ci_high - accuracy)
        ax.errorbar(x, accuracy, yerr=[[below], [above]], color="#222222", capsize=3, lw=1)
    # The value sits at the foot of the bar, clear of the interval and the paper's marker.
    inside = accuracy >= 0.1
    ax.text(
        x,
        0.015,
        percent(accuracy),
        ha="center",
        va="bottom",
        fontsize=7,
        color="white" if inside else "#222222",
        fontweight="bold",
        rotation=90 if width < 0.3 else 0,
    )


def _people(ax: Axes, x: float, cell: Cell) -> None:
    """The rate people would give (calibrated), beside the judge's bar, with its interval."""
    c = cell.calibrated
    if c is None or not calibration_shown(c) or c.estimate is None:
        return
    low, high = c.ci_low or c.estimate, c.ci_high or c.estimate
    ax.errorbar(
        x,
        c.estimate,
        yerr=[[c.estimate - low], [high - c.estimate]],
        fmt="o",
        markersize=5,
        color=PEOPLE_COLOUR,
        capsize=2,
        lw=1,
        zorder=5,
    )


def _has_people(runs: Mapping[str, Sequence[Cell]]) -> bool:
    return any(
        c.calibrated is not None and calibration_shown(c.calibrated)
        for cells in runs.values()
        for c in cells
    )


def _has_paper(runs: Mapping[str, Sequence[Cell]]) -> bool:
    return any(c.paper_magma_accuracy is not None for cells in runs.values() for c in cells)


def _legend(figure: Figure, runs: Sequence[str], any_paper: bool, any_people: bool) -> None:
    handles: list[Patch | Line2D] = [
        Patch(color=RUN_COLOURS[i % len(RUN_COLOURS)], alpha=0.85, label=f"{run} (95% interval)")
        for i, run in enumerate(runs)
    ]
    if any_people:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                color=PEOPLE_COLOUR,
                label="people: calibrated from labels + judge",
            )
        )
    if any_paper:
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                linestyle="none",
                color=PAPER_COLOUR,
                markerfacecolor="white",
                markeredgewidth=1.6,
                label=f"{PAPER_LABEL}: the paper's own result",
            )
        )
    figure.legend(
        handles=handles,
        loc="outside upper center",
        ncols=len(handles),
        frameon=False,
        fontsize=9,
    )
