"""Rebuild every report file of one or more run directories from their stores."""

from __future__ import annotations

import csv
import errno
import io
import json
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from vlmalign.atomic import leftovers, staged
from vlmalign.errors import VlmalignError
from vlmalign.report.across_runs import across_runs
from vlmalign.report.analysis import Analysis, analyse
from vlmalign.report.markdown import render_markdown
from vlmalign.report.results import results_document
from vlmalign.report.run_data import load_run

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"
CELLS_CSV = "results.csv"
COMPARISONS_CSV = "comparisons.csv"


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Conditions (model, split, shots) as one text column for spreadsheets."""
    return {k: " ".join(map(str, v)) if isinstance(v, list | tuple) else v for k, v in row.items()}


def cell_row(row: dict[str, Any], model_names: dict[str, str]) -> dict[str, Any]:
    """A cell as a `results.csv` row: `model` is the model's name and `variant` base/finetuned
    (as in `labels export` and `responses export`), the calibrated estimate as `calibrated_*`
    columns (empty without one)."""
    calibrated = row.get("calibrated") or {}
    flat = {"model": model_names.get(row["run"], ""), "variant": row["model"]}
    flat |= {k: v for k, v in row.items() if k not in ("calibrated", "model")}
    for key in CALIBRATED_COLUMNS:
        flat[f"calibrated_{key}"] = calibrated.get(key)
    return flat


CALIBRATED_COLUMNS = ("estimate", "ci_low", "ci_high", "n_labelled", "n_unlabelled", "lam")


def render_files(analyses: Sequence[Analysis]) -> dict[str, str]:
    from vlmalign.report.html import render_html

    across = across_runs(analyses) if len(analyses) > 1 else None
    model_names = {a.run.name: a.run.provenance.model or "" for a in analyses}
    results = results_document(analyses, across).model_dump(mode="json")
    return {
        RESULTS_FILE: json.dumps(results, indent=2) + "\n",
        REPORT_FILE: render_markdown(analyses, across),
        CELLS_CSV: _csv([cell_row(c, model_names) for c in results["cells"]]),
        COMPARISONS_CSV: _csv([_flat(c) for c in results["comparisons"]]),
        HTML_FILE: render_html(analyses, across),
    }


def build_report(run_dirs: Sequence[Path], out_dir: Path, paper: bool = True) -> list[Analysis]:
    """Analyse the runs and write every report file into `out_dir` (all written, or none).
    `paper=False` leaves the paper's own numbers out even where they apply."""
    analyses = [analyse(load_run(run_dir), paper=paper) for run_dir in run_dirs]
    files = render_files(analyses)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Every file is written before any replaces its old one; a failure replaces none
        # and leaves no temporary file behind (`atomic.staged`).
        with ExitStack() as stack:
            for name, text in files.items():
                for leftover in leftovers(out_dir / name):  # of a report killed mid-write
                    leftover.unlink(missing_ok=True)
                stack.enter_context(staged(out_dir / name)).write_text(text, encoding="utf-8")
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise VlmalignError(
            f"{out_dir}: cannot write the report ({reason}); free space or pass --out to a "
            "writable folder"
        ) from exc
    return analyses
