"""The paper's two tables as rows of text, for the terminal, Markdown and HTML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmalign.report.analysis import Cell

TABLE1_COLUMNS = ((0, "0-shot train"), (1, "1-shot train"), (2, "2-shot train"))
TABLE2_COLUMNS = (("train", "0-shot train"), ("test", "0-shot test"))


def find_cell(cells: Sequence[Cell], model: str, split: str, shots: int, judge: str) -> Cell | None:
    for cell in cells:
        if (cell.model, cell.split, cell.shots, cell.judge) == (model, split, shots, judge):
            return cell
    return None


def _text(cell: Cell | None, paper: bool) -> str:
    if cell is None:
        return "–"
    if paper and cell.paper_magma_accuracy is not None:
        return f"{cell.text()}; paper: {cell.paper_magma_accuracy:.0%}"
    return cell.text()


def table1_rows(
    cells: Sequence[Cell], judges: Sequence[str], paper: bool = False
) -> list[list[str]]:
    """Paper's Table 1: rows = judges, columns = 0/1/2-shot on train (base model)."""
    return [
        [
            judge,
            *(_text(find_cell(cells, "base", "train", s, judge), paper) for s, _ in TABLE1_COLUMNS),
        ]
        for judge in judges
    ]


def table2_rows(
    cells: Sequence[Cell], judges: Sequence[str], paper: bool = False
) -> list[list[str]]:
    """Paper's Table 2: base vs finetuned, 0-shot, train and test (one row per judge and model)."""
    models = [m for m in ("base", "finetuned") if any(c.model == m for c in cells)]
    return [
        [
            judge,
            model,
            *(_text(find_cell(cells, model, sp, 0, judge), paper) for sp, _ in TABLE2_COLUMNS),
        ]
        for judge in judges
        for model in models
    ]


def loss_rows(epoch_losses: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [str(e["epoch"]), f"{e['loss']:.4f}", f"{e.get('seconds') or 0:.0f}"] for e in epoch_losses
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
