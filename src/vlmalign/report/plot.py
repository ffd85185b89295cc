"""The accuracy plot: one panel per judge, one bar per run and condition, with 95% intervals
and the paper's own MAGMA numbers as separate markers (rendered to PNG, no pyplot state).

Each bar's value label sits just above the highest thing drawn over that bar (its interval's
upper whisker, the people marker beside it, the paper's diamond), a fixed distance in points
away, so it never covers an error bar; the y-axis is then raised until every label fits. The
artists carry gids (`value:`, `interval:`, `paper:`, `people:` + judge, run, condition) so a
test can measure them."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation
from matplotlib.ticker import PercentFormatter

from vlmalign.report.calibration import calibration_shown
from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.report.formatting import NOT_INFORMATIVE, percent
from vlmalign.report.reference import PAPER_LABEL
from vlmalign.schemas.results import CellRecord

LABEL_GAP_PT = 4.0  # points above the whisker: clear of its cap (3 points each way)
MARKER_GAP_PT = 6.0  # more above the paper's diamond, which is 7 points tall
TOP = 1.08  # the y-axis top without labels to fit: headroom above a 100% bar
MAX_WIDTH = 13.0  # inches: wider figures get too small once the page scales them down
MAX_COLUMNS = 3
PANEL_WIDTH_PER_CONDITION = 0.6  # inches; keeps bar groups readable with 2 runs
RUN_COLOURS = ("#3b6ea8", "#e08a2c", "#5a9e5a", "#b5517a", "#7d6bb0", "#8c8c8c")
PAPER_COLOUR = "#111111"
PEOPLE_COLOUR = "#c2410c"


def accuracy_png(runs: Mapping[str, Sequence[CellRecord]], dpi: int = 110) -> bytes:
    """PNG of accuracy by condition, one panel per judge; `runs` maps a run's label to its cells."""
    figure = accuracy_figure(runs, dpi)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def accuracy_figure(runs: Mapping[str, Sequence[CellRecord]], dpi: int = 110) -> Figure:
    """The plot as a matplotlib Figure (on an Agg canvas), its value labels already fitted."""
    judges = _unique(cell.judge for cells in runs.values() for cell in cells)
    conditions = sorted_conditions(cell.condition for cells in runs.values() for cell in cells)
    panel_width = max(3.2, 1.0 + len(conditions) * PANEL_WIDTH_PER_CONDITION * len(runs) ** 0.5)
    columns = max(1, min(len(judges), MAX_COLUMNS, int(MAX_WIDTH // panel_width)))
    rows = max(1, math.ceil(len(judges) / columns))
    # Constrained layout leaves room for the legend placed outside the panels.
    figure = Figure(
        figsize=(columns * panel_width, rows * 3.4 + 0.5), dpi=dpi, layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    labels: list[_Label] = []
    for index, (ax, judge) in enumerate(zip(axes, judges, strict=False)):
        labels += _panel(ax, judge, conditions, runs)
        if index % columns == 0:
            ax.set_ylabel("accuracy (aligned share)", fontsize=9)
    for ax in axes[len(judges) :]:
        ax.set_visible(False)
    if not judges:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no verdicts", ha="center", va="center")
    _legend(figure, list(runs), any_paper=_has_paper(runs), any_people=_has_people(runs))
    _fit_labels(figure, labels)
    return figure


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))  # first-seen order


def _panel(
    ax: Axes,
    judge: str,
    conditions: Sequence[ConditionKey],
    runs: Mapping[str, Sequence[CellRecord]],
) -> list[_Label]:
    """One judge's bars, intervals and markers; returns the value labels to fit."""
    width = 0.8 / max(1, len(runs))
    papers = {
        c.condition: c.paper_magma_accuracy
        for cells in runs.values()
        for c in cells
        if c.judge == judge and c.paper_magma_accuracy is not None
    }
    markers: dict[ConditionKey, Line2D] = {}
    for position, condition in enumerate(conditions):
        paper = papers.get(condition)
        if paper is not None:
            (markers[condition],) = ax.plot(
                position,
                paper,
                marker="D",
                markersize=7,
                color=PAPER_COLOUR,
                markerfacecolor="white",
                markeredgewidth=1.6,
                zorder=4,
                gid=f"paper:{judge}:{condition.label}",
            )
    labels: list[_Label] = []
    for index, (run, cells) in enumerate(runs.items()):
        by_condition = {c.condition: c for c in cells if c.judge == judge}
        offset = (index - (len(runs) - 1) / 2) * width
        for position, condition in enumerate(conditions):
            cell = by_condition.get(condition)
            if cell is None or cell.accuracy is None:
                continue
            x = position + offset
            name = f"{judge}:{run}:{condition.label}"
            colour = RUN_COLOURS[index % len(RUN_COLOURS)]
            tops: list[float | None] = [_bar(ax, x, width, cell, colour, name)]
            tops.append(_people(ax, x + width * 0.3, cell, name))
            text = _value_label(ax, x, width, cell, tops, name)
            labels.append(_Label(text, markers.get(condition), papers.get(condition)))
    flagged = any(
        c.judge == judge and c.judge_informative is False for cells in runs.values() for c in cells
    )
    title = judge + (f"\n({NOT_INFORMATIVE})" if flagged else "")
    ax.set_title(title, fontsize=11, fontweight="bold", color="#b45309" if flagged else "black")
    ax.set_xticks(range(len(conditions)), [c.tick for c in conditions], fontsize=8)
    ax.set_xlim(-0.6, len(conditions) - 0.4)
    ax.set_ylim(0, TOP)  # raised later, where a value label needs more room
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.tick_params(axis="y", labelleft=True)  # sharey hides them on inner panels
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return labels


def _bar(ax: Axes, x: float, width: float, cell: CellRecord, colour: str, name: str) -> float:
    """The bar and its interval; returns the top of what was drawn (the upper whisker)."""
    accuracy = float(cell.accuracy or 0.0)
    ax.bar(x, accuracy, width * 0.92, color=colour, alpha=0.85, gid=f"bar:{name}")
    if cell.ci_low is None or cell.ci_high is None:
        return accuracy
    below, above = max(0.0, accuracy - cell.ci_low), max(0.0, cell.ci_high - accuracy)
    interval = ax.errorbar(x, accuracy, yerr=[[below], [above]], color="#222222", capsize=3, lw=1)
    for artist in interval.get_children():
        artist.set_gid(f"interval:{name}")
    return accuracy + above


def _value_label(
    ax: Axes,
    x: float,
    width: float,
    cell: CellRecord,
    tops: Sequence[float | None],
    name: str,
) -> Annotation:
    """The accuracy written just above the highest of `tops`: the whisker, the people marker."""
    return ax.annotate(
        percent(cell.accuracy),
        xy=(x, max(t for t in tops if t is not None)),
        xytext=(0, LABEL_GAP_PT),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=7,
        color="#222222",
        fontweight="bold",
        rotation=90 if width < 0.3 else 0,
        annotation_clip=False,
        gid=f"value:{name}",
    )


@dataclass(frozen=True)
class _Label:
    text: Annotation
    marker: Line2D | None = None  # the paper's diamond of the label's condition, if any
    paper: float | None = None  # where that diamond sits


def _fit_labels(figure: Figure, labels: Sequence[_Label]) -> None:
    """Lifts a label over the paper's diamond where they would meet, then raises the shared
    y-axis until every value label lies inside its panel.

    A label is a fixed size in points above a point in data coordinates, so a panel of height
    H pixels whose label is h pixels tall (gap included) above y needs a top of y·H / (H − h).
    Each change moves the layout a little, so this repeats until nothing changes."""
    if not labels:
        return
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    axes = list(dict.fromkeys(ax for label in labels if (ax := label.text.axes) is not None))
    for _ in range(6):
        figure.draw_without_rendering()
        moved = False
        for label in labels:
            text, marker, paper = label.text, label.marker, label.paper
            if marker is None or paper is None:
                continue
            if text.get_window_extent(renderer).overlaps(marker.get_window_extent(renderer)):
                x, y = text.xy
                text.xy = (x, max(float(y), paper))
                text.xyann = (0, MARKER_GAP_PT)
                moved = True
        if moved:
            continue
        needed = TOP
        for label in labels:
            ax = label.text.axes
            if ax is None:
                continue
            height = ax.get_window_extent(renderer).height
            anchor = float(label.text.xy[1])
            above = (
                label.text.get_window_extent(renderer).y1 - ax.transData.transform((0, anchor))[1]
            )
            if height - above > 1:  # else a panel too small to hold any label: leave it
                needed = max(needed, 1.01 * anchor * height / (height - above))
        if needed <= axes[0].get_ylim()[1] * 1.001:
            return
        for ax in axes:
            ax.set_ylim(0, needed)


def _people(ax: Axes, x: float, cell: CellRecord, name: str) -> float | None:
    """The rate people would give (calibrated), beside the judge's bar, with its interval;
    returns the top of its interval (None when not shown)."""
    c = cell.calibrated
    if c is None or not calibration_shown(c) or c.estimate is None:
        return None
    low, high = c.ci_low or c.estimate, c.ci_high or c.estimate
    marker = ax.errorbar(
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
    for artist in marker.get_children():
        artist.set_gid(f"people:{name}")
    return max(high, c.estimate)


def _has_people(runs: Mapping[str, Sequence[CellRecord]]) -> bool:
    return any(
        c.calibrated is not None and calibration_shown(c.calibrated)
        for cells in runs.values()
        for c in cells
    )


def _has_paper(runs: Mapping[str, Sequence[CellRecord]]) -> bool:
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
