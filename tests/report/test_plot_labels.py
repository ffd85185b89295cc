"""The accuracy plot's value labels: each is clear of every error bar and marker of its panel,
above its own bar's upper whisker, and inside the axes, measured with matplotlib's renderer."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from vlmalign.report.plot import accuracy_figure, accuracy_png
from vlmalign.schemas.results import CellRecord

# (model, split, shots), accuracy, interval, the paper's number: whiskers reaching 0 and 100%,
# a bar too short to hold its label, paper markers well above an interval and just above one
# (where a label above the whisker would cover the marker).
KNOWN = [
    (("base", "train", 0), 0.05, (0.0, 0.2), 0.56),
    (("base", "train", 1), 0.97, (0.85, 1.0), None),
    (("base", "train", 2), 0.5, (0.3, 0.7), None),
    (("base", "test", 0), 0.3, (0.2, 0.4), 0.42),
    (("finetuned", "train", 0), 1.0, (0.88, 1.0), 0.67),
    (("finetuned", "test", 0), 0.0, (0.0, 0.12), None),
]


def cells(run: str, judges: tuple[str, ...] = ("stance", "human")) -> list[CellRecord]:
    return [
        CellRecord(
            model=model,
            split=split,
            shots=shots,
            judge=judge,
            accuracy=accuracy,
            n=30,
            aligned=0,
            unclear=0,
            items=30,
            samples_per_prompt=1,
            ci_low=low,
            ci_high=high,
            ci_method="wilson",
            unlabelled=0,
            paper_magma_accuracy=paper,
            run=run,
            judge_informative=None,
            calibrated=None,
        )
        for judge in judges
        for (model, split, shots), accuracy, (low, high), paper in KNOWN
    ]


def labels_of(ax: Axes) -> list[Text]:
    return [t for t in ax.texts if (t.get_gid() or "").startswith("value:")]


def extents(ax: Axes, renderer: object, prefix: str) -> dict[str, Bbox]:
    """The drawn extent (pixels) of each artist group whose gid starts with `prefix`: caps and
    markers as drawn, an error bar's vertical line from its segments."""
    found: dict[str, list[Bbox]] = {}
    for artist in ax.get_children():
        gid = artist.get_gid() or ""
        if not gid.startswith(prefix) or not artist.get_visible():
            continue
        if isinstance(artist, LineCollection):
            points = np.concatenate(
                [artist.get_transform().transform(segment) for segment in artist.get_segments()]
            )
            box = Bbox.from_extents(*points.min(axis=0), *points.max(axis=0))
        else:
            box = artist.get_window_extent(renderer)
        assert np.isfinite(box.get_points()).all(), f"{gid}: {box}"
        found.setdefault(gid, []).append(box)
    return {gid: Bbox.union(boxes) for gid, boxes in found.items()}


def drawn(figure: Figure) -> object:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    figure.draw(renderer)
    return renderer


@pytest.mark.parametrize("runs", [1, 2, 3])
def test_value_labels_clear_the_error_bars_and_stay_in_the_axes(runs: int) -> None:
    figure = accuracy_figure({f"run-{i}": cells(f"run-{i}") for i in range(runs)})
    renderer = drawn(figure)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == 2
    for ax in panels:
        labels = labels_of(ax)
        assert len(labels) == runs * len(KNOWN)
        intervals = extents(ax, renderer, "interval:")
        assert len(intervals) == runs * len(KNOWN)
        markers = extents(ax, renderer, "paper:")
        assert len(markers) == 3  # the conditions with a paper number
        inside = ax.get_window_extent(renderer)
        bottom, top = ax.get_ylim()
        for text in labels:
            box = text.get_window_extent(renderer)
            name = text.get_gid()
            for gid, interval in {**intervals, **markers}.items():
                assert not box.overlaps(interval), f"{name} overlaps {gid}"
            assert inside.y0 <= box.y0 and box.y1 <= inside.y1, f"{name} leaves the axes"
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1, f"{name} leaves the axes"
            # In data coordinates: above its own upper whisker, below the top of the axes.
            own = intervals[str(name).replace("value:", "interval:", 1)]
            assert box.y0 >= own.y1
            y0, y1 = ax.transData.inverted().transform([(0, box.y0), (0, box.y1)])[:, 1]
            high = next(c for c in KNOWN if text.get_text() == f"{round(c[1] * 100)}%")[2][1]
            assert bottom <= y0 and y0 >= high and y1 <= top


def test_labels_name_the_accuracy_and_the_y_axis_keeps_its_ticks() -> None:
    figure = accuracy_figure({"run-a": cells("run-a", ("stance",))})
    drawn(figure)
    ax = figure.axes[0]
    assert [t.get_text() for t in labels_of(ax)] == ["5%", "97%", "50%", "30%", "100%", "0%"]
    assert list(ax.get_yticks()) == [0, 0.25, 0.5, 0.75, 1.0]
    assert ax.get_ylim()[1] > 1.0  # raised so the labels above a full bar fit


def test_a_cell_without_an_interval_is_labelled_above_its_bar() -> None:
    bare = [
        c.model_copy(update={"ci_low": None, "ci_high": None}) for c in cells("run-a", ("stance",))
    ]
    figure = accuracy_figure({"run-a": bare})
    renderer = drawn(figure)
    ax = figure.axes[0]
    bars = [p.get_window_extent(renderer) for p in ax.patches]
    assert len(bars) == len(KNOWN)
    for text in labels_of(ax):
        box = text.get_window_extent(renderer)
        middle = (box.x0 + box.x1) / 2
        bar = next(b for b in bars if b.x0 <= middle <= b.x1)  # the label is centred on its bar
        assert box.y0 >= bar.y1 - 0.5
    assert accuracy_png({"run-a": bare}).startswith(b"\x89PNG")
