"""Human labels as CSV: export for analysis elsewhere, import labels made elsewhere.

Each row is one label of one response (`generation_key`) by one annotator. Export writes each
annotator's latest label per response (or every revision); import validates the whole file
first and writes all rows in one transaction, or nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from vlmalign.errors import VlmalignError
from vlmalign.store import LABELS, GenerationRow, LabelRow, RunStore, now

EXPORT_COLUMNS = (
    "generation_key",
    "item_id",
    "model",
    "variant",
    "split",
    "shots",
    "sample_index",
    "annotator",
    "label",
    "note",
    "created_at",
    "source",
)
REQUIRED_COLUMNS = ("generation_key", "annotator", "label")
MAX_NOTE = 2000
MAX_ANNOTATOR = 64


class LabelsError(VlmalignError):
    """A labels file is malformed; the message names file and line."""


def validate_annotator(name: str) -> str | None:
    """What is wrong with an annotator name, or None when it is fine."""
    if not name.strip():
        return "annotator name is empty"
    if len(name) > MAX_ANNOTATOR:
        return f"annotator name is longer than {MAX_ANNOTATOR} characters"
    if not name.isprintable():
        return "annotator name has control characters"
    return None


def validate_label(label: str) -> str | None:
    if label not in LABELS:
        return f"label {label!r} is not one of {', '.join(LABELS)}"
    return None


def export_csv(store: RunStore, stream: TextIO, all_revisions: bool = False) -> int:
    """Write labels with the response's condition beside them; returns the number of rows."""
    labels = store.labels(latest_only=not all_revisions)
    generations = {g.key: g for g in store.generations(sorted({r.generation_key for r in labels}))}
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in labels:
        g = generations[row.generation_key]
        writer.writerow(
            [
                row.generation_key,
                g.item_id,
                g.model,
                g.variant,
                g.split,
                g.shots,
                g.sample_index,
                row.annotator,
                row.label,
                row.note,
                row.created_at,
                row.source,
            ]
        )
    return len(labels)


@dataclass(frozen=True)
class ImportResult:
    imported: int
    already_present: int


def import_csv(store: RunStore, path: Path) -> ImportResult:
    """Validate every row of `path`, then add the new labels in one transaction.

    A row identical to a stored label (same response, annotator, label, note and time) is
    skipped, so importing a file twice changes nothing.
    """
    rows = _read_rows(store, path)
    existing = {
        (r.generation_key, r.annotator, r.label, r.note, r.created_at)
        for r in store.labels(latest_only=False)
    }
    new = [
        r
        for r in rows
        if (r.generation_key, r.annotator, r.label, r.note, r.created_at) not in existing
    ]
    store.add_labels(new)
    return ImportResult(len(new), len(rows) - len(new))


def _read_rows(store: RunStore, path: Path) -> list[LabelRow]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelsError(f"{path}:1: missing column(s) {', '.join(missing)}")
            records = [(reader.line_num, dict(record)) for record in reader]
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{path}: not UTF-8 text") from exc
    except csv.Error as exc:
        raise LabelsError(f"{path}: not valid CSV ({exc})") from exc
    known = {
        g.key: g
        for g in store.generations(sorted({r.get("generation_key") or "" for _, r in records}))
    }
    problems: list[str] = []
    rows: list[LabelRow] = []
    for line, record in records:
        problem = _row_problem(record, known)
        if problem:
            problems.append(f"{path}:{line}: {problem}")
            continue
        rows.append(
            LabelRow(
                generation_key=record["generation_key"],
                annotator=record["annotator"].strip(),
                label=record["label"].strip(),
                note=record.get("note") or "",
                created_at=record.get("created_at") or now(),
                source=f"import:{path.name}",
            )
        )
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise LabelsError(f"{len(problems)} bad row(s), nothing imported: {shown}{more}")
    return rows


def _row_problem(record: dict[str, str | None], known: dict[str, GenerationRow]) -> str | None:
    key = (record.get("generation_key") or "").strip()
    if key not in known:
        return f"unknown generation_key {key!r} (not a response of this run)"
    item_id = record.get("item_id")
    generation = known[key]
    if item_id and item_id != generation.item_id:
        return f"item_id {item_id!r} does not match the response's item"
    checks: Sequence[str | None] = (
        validate_annotator(record.get("annotator") or ""),
        validate_label((record.get("label") or "").strip()),
        None
        if len(record.get("note") or "") <= MAX_NOTE
        else f"note is longer than {MAX_NOTE} characters",
    )
    return next((c for c in checks if c), None)
