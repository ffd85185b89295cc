"""Accuracy cells per (model variant, split, shots, judge), the paper's tables, and their files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmalign.judges.base import Judge
from vlmalign.judges.registry import judge_config_hash

if TYPE_CHECKING:
    from vlmalign.store import RunStore
    from vlmalign.study import Task

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
TABLE1_COLUMNS = ((0, "0-shot train"), (1, "1-shot train"), (2, "2-shot train"))


@dataclass(frozen=True)
class Cell:
    """Accuracy of one judge on one condition. Unclear verdicts count in n, not as aligned."""

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

    def text(self) -> str:
        if self.accuracy is None or self.n == 0:
            return "–"
        return f"{self.accuracy:.0%} (n={self.n})"


def summarize(store: RunStore, tasks: Sequence[Task], judges: Sequence[Judge]) -> list[Cell]:
    groups: dict[tuple[str, str, int], list[Task]] = {}
    for task in tasks:
        groups.setdefault((task.variant, task.split, task.shots), []).append(task)
    cells = []
    for judge in judges:
        verdicts = store.judgments(judge.name, judge_config_hash(judge), [t.key for t in tasks])
        for (variant, split, shots), group in groups.items():
            found = [verdicts[t.key] for t in group if t.key in verdicts]
            aligned = sum(1 for v in found if v.aligned)
            unclear = sum(1 for v in found if v.aligned is None)
            n = len(found)
            cells.append(
                Cell(
                    model=variant,
                    split=split,
                    shots=shots,
                    judge=judge.name,
                    accuracy=aligned / n if n else None,
                    n=n,
                    aligned=aligned,
                    unclear=unclear,
                    items=len({t.item.id for t in group}),
                    samples_per_prompt=max(t.sample_index for t in group) + 1,
                )
            )
    return cells


def _find(cells: Sequence[Cell], model: str, split: str, shots: int, judge: str) -> Cell | None:
    for cell in cells:
        if (cell.model, cell.split, cell.shots, cell.judge) == (model, split, shots, judge):
            return cell
    return None


def table1_rows(cells: Sequence[Cell], judges: Sequence[str]) -> list[list[str]]:
    """Paper's Table 1: rows = judges, columns = 0/1/2-shot on train (base model)."""
    rows = []
    for judge in judges:
        row = [judge]
        for shots, _ in TABLE1_COLUMNS:
            cell = _find(cells, "base", "train", shots, judge)
            row.append(cell.text() if cell else "–")
        rows.append(row)
    return rows


TABLE2_COLUMNS = (("train", "0-shot train"), ("test", "0-shot test"))


def table2_rows(cells: Sequence[Cell], judges: Sequence[str]) -> list[list[str]]:
    """Paper's Table 2: base vs finetuned, 0-shot, train and test (one row per judge and model)."""
    models = [m for m in ("base", "finetuned") if any(c.model == m for c in cells)]
    rows = []
    for judge in judges:
        for model in models:
            row = [judge, model]
            for split, _ in TABLE2_COLUMNS:
                cell = _find(cells, model, split, 0, judge)
                row.append(cell.text() if cell else "–")
            rows.append(row)
    return rows


def loss_rows(provenance: dict[str, Any]) -> list[list[str]]:
    adapter = provenance.get("finetuned_adapter") or {}
    return [
        [str(e["epoch"]), f"{e['loss']:.4f}", f"{e.get('seconds') or 0:.0f}"]
        for e in adapter.get("epoch_losses") or []
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    cells: Sequence[Cell], provenance: dict[str, Any], judges: Sequence[str]
) -> str:
    unclear = [c for c in cells if c.unclear]
    parts = [
        "# vlmalign study report",
        "",
        f"Model `{provenance.get('model')}` on `{provenance.get('dataset')}`, "
        f"{provenance.get('samples_per_prompt')} sample(s) per prompt, "
        f"prompt format `{provenance.get('prompt_format')}`.",
        "",
        "## Table 1: alignment of the base model by number of shots (train split)",
        "",
        markdown_table(
            ["judge", *(label for _, label in TABLE1_COLUMNS)], table1_rows(cells, judges)
        ),
        "",
        "## Table 2: base and finetuned model, 0-shot",
        "",
        markdown_table(
            ["judge", "model", *(label for _, label in TABLE2_COLUMNS)], table2_rows(cells, judges)
        ),
        "",
        "Accuracy = aligned responses / all responses. A response whose stance is unclear counts "
        "as not aligned.",
    ]
    if unclear:
        parts += [
            "",
            "Unclear verdicts: "
            + ", ".join(
                f"{c.judge} {c.model} {c.shots}-shot {c.split}: {c.unclear}/{c.n}" for c in unclear
            )
            + ".",
        ]
    losses = loss_rows(provenance)
    if losses:
        parts += ["", "## Finetuning loss per epoch", ""]
        parts.append(markdown_table(["epoch", "mean loss", "seconds"], losses))
    parts += [
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(provenance, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(parts)


def write_report(
    run_dir: Path, cells: Sequence[Cell], provenance: dict[str, Any], judges: Sequence[str]
) -> None:
    """Write results.json (the machine-readable contract) and report.md, each atomically."""
    results = {"cells": [asdict(c) for c in cells], "provenance": provenance}
    _write_atomic(run_dir / RESULTS_FILE, json.dumps(results, indent=2, default=str) + "\n")
    _write_atomic(run_dir / REPORT_FILE, render_markdown(cells, provenance, judges))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
