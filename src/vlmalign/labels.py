"""Human labels as CSV: export for analysis elsewhere, import labels made elsewhere.

Each row is one label of one response (`generation_key`) by one annotator. Export writes each
annotator's latest label per response (or every revision); import validates the whole file
first and writes all rows in one transaction, or nothing.

The file is UTF-8 (a byte-order mark, as Excel writes it, is accepted on import) and every cell
is quoted, so notes may hold commas, quotes and any line break (CR, LF, CRLF, U+2028). A cell
that a spreadsheet would run as a formula (one starting `=`, `+`, `-`, `@`, a tab, CR, LF or NUL,
or such a character after leading spaces or control characters) is exported with a `'` in
front, as OWASP recommends against CSV injection; import removes exactly that one `'` again (see
`neutralise_cell` / `restore_cell`), so export then import is lossless.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from vlmalign.errors import VlmalignError, shown_path
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
# What makes a spreadsheet read a cell as a formula: OWASP's "CSV Injection" lists `=`, `+`,
# `-`, `@`, tab, CR and LF as first characters, its ASVS (1.2.10) adds NUL. Spreadsheets also
# skip leading spaces and control characters before a formula (` =1+1`), so a cell is read as
# one when such a character follows them (`formula_like`).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
# Characters a spreadsheet may skip before a formula: spaces (Unicode's too), control and format
# characters (a zero-width space, a byte-order mark).
SKIPPED_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})
# How far an imported `created_at` may lie in the future (clocks of other machines drift).
CLOCK_SKEW = timedelta(minutes=5)
MAX_PROBLEMS_SHOWN = 10


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
        return f"label {_shown(label)} is not one of {', '.join(LABELS)}"
    return None


def _shown(value: str, limit: int = 40) -> str:
    """A value quoted for a one-line message: escaped, and cut when long."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def validate_created_at(value: str, current: datetime) -> str | None:
    """What is wrong with a label's time: ISO 8601 with a timezone, not after `current` + skew."""
    example = "e.g. 2026-01-31T14:05:00+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return f"created_at {_shown(value)} is not an ISO 8601 time ({example})"
    if when.utcoffset() is None:
        return f"created_at {_shown(value)} has no timezone (add +00:00 or Z: {example})"
    try:
        future = when > current + CLOCK_SKEW
    except OverflowError:  # pragma: no cover - only at the ends of datetime's range
        future = True
    if future:
        return f"created_at {_shown(value)} is in the future"
    return None


def formula_like(text: str) -> bool:
    """Whether a spreadsheet could read `text` as a formula: it starts with a formula character,
    or with spaces or control characters and then one."""
    if text.startswith(FORMULA_STARTS):
        return True
    start = 0
    while start < len(text) and (
        text[start].isspace() or unicodedata.category(text[start]) in SKIPPED_CATEGORIES
    ):
        start += 1
    return start > 0 and text.startswith(FORMULA_STARTS, start)


def neutralise_cell(value: str) -> str:
    """The cell as written to CSV: `'` in front when a spreadsheet would run it as a formula.

    A cell whose leading `'`s are followed by a formula (`formula_like`) gets one more `'` as
    well, so that `restore_cell` can undo exactly this for every text.
    """
    return "'" + value if formula_like(value.lstrip("'")) else value


def restore_cell(value: str) -> str:
    """Undo `neutralise_cell`: drop one leading `'` before `'`s and a formula."""
    if value.startswith("'") and formula_like(value.lstrip("'")):
        return value[1:]
    return value


def export_csv(store: RunStore, stream: TextIO, all_revisions: bool = False) -> int:
    """Write labels with the response's condition beside them; returns the number of rows.
    A damaged store is refused (`StoreError`) before anything is written."""
    store.db.check_intact("nothing was exported")
    labels = store.labels(latest_only=not all_revisions)
    generations = {g.key: g for g in store.generations(sorted({r.generation_key for r in labels}))}
    # Every cell quoted: a note may hold a bare CR, which an unquoted cell would end the row at.
    writer = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(EXPORT_COLUMNS)
    for row in labels:
        g = generations[row.generation_key]
        cells = (
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
        )
        writer.writerow([neutralise_cell(str(cell)) for cell in cells])
    return len(labels)


@dataclass(frozen=True)
class ImportResult:
    imported: int
    already_present: int  # rows identical to a label already stored
    repeated: int = 0  # rows identical to an earlier row of the same file


def import_csv(store: RunStore, path: Path) -> ImportResult:
    """Validate every row of `path`, then add the new labels in one transaction.

    A row identical to a stored label (same response, annotator, label, note and time) is
    skipped, so importing a file twice changes nothing. Rows identical to each other within the
    file are stored once, at the place of the last of them, so each annotator's latest label
    stays the one that was latest in the file. A damaged store is refused (`StoreError`) before
    the file is read.
    """
    store.db.check_intact("nothing was imported")
    rows = _read_rows(store, path)
    unique = list(reversed(dict.fromkeys(reversed(rows))))
    existing = {_identity(r) for r in store.labels(latest_only=False)}
    new = [r for r in unique if _identity(r) not in existing]
    store.add_labels(new)
    return ImportResult(len(new), len(unique) - len(new), len(rows) - len(unique))


def _identity(row: LabelRow) -> tuple[str, str, str, str, str]:
    return (row.generation_key, row.annotator, row.label, row.note, row.created_at)


def _read_rows(store: RunStore, path: Path) -> list[LabelRow]:
    records = _read_records(path)
    known = {
        g.key: g
        for g in store.generations(sorted({r.get("generation_key", "") for _, r in records}))
    }
    stamp, current = now(), datetime.now(UTC)
    shown = shown_path(path)
    problems: list[str] = []
    rows: list[LabelRow] = []
    for line, record in records:
        problem = _row_problem(record, known, current)
        if problem:
            problems.append(f"{shown}:{line}: {problem}")
            continue
        rows.append(
            LabelRow(
                generation_key=record["generation_key"],
                annotator=record["annotator"],
                label=record["label"],
                note=record.get("note", ""),
                created_at=record.get("created_at") or stamp,
                source=f"import:{shown_path(path.name)}",  # text: a name in any encoding
            )
        )
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        extra = len(problems) - MAX_PROBLEMS_SHOWN
        more = f" (and {extra} more)" if extra > 0 else ""
        raise LabelsError(f"{len(problems)} bad row(s), nothing imported: {shown}{more}")
    return rows


def _read_records(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, cells by column) for each non-empty row, cells stripped (notes kept as they are)
    and restored from their export form; errors name `file:line`."""
    shown = shown_path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelsError(f"{shown}: cannot read ({exc.strerror}); check the path") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LabelsError(
            f"{shown}:{line}: not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8 CSV"
        ) from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[tuple[int, dict[str, str]]] = []
    while True:
        line = reader.line_num + 1  # where the next row starts
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise LabelsError(f"{shown}:{line}: {_csv_problem(exc)}") from exc
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or a row of empty cells (as spreadsheets leave at the end)
        if header is None:
            header = [cell.strip() for cell in cells]
            _check_header(path, line, header)
            continue
        if len(cells) > len(header):
            raise LabelsError(
                f"{shown}:{line}: {len(cells)} cells but the header has {len(header)} "
                "(quote a note that holds a comma)"
            )
        record = dict(zip(header, cells, strict=False))
        records.append((line, {name: _clean(name, cell) for name, cell in record.items()}))
    if header is None:
        raise LabelsError(
            f"{shown}:1: no header line; the first line must name the columns "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    return records


def _csv_problem(exc: csv.Error) -> str:
    reason = str(exc)
    if "field larger than field limit" in reason:
        return (
            f"a cell is longer than {csv.field_size_limit()} characters "
            f"(a note holds at most {MAX_NOTE}; check for an unclosed quote)"
        )
    if "unexpected end of data" in reason:
        return "a quoted cell is never closed (check the quotes from this line on)"
    return f"not valid CSV ({reason}); a quote inside a quoted cell is written twice"


def _check_header(path: Path, line: int, header: list[str]) -> None:
    shown = shown_path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise LabelsError(
            f"{shown}:{line}: missing column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    repeated = sorted({c for c in header if c and header.count(c) > 1})
    if repeated:
        raise LabelsError(f"{shown}:{line}: column(s) {', '.join(repeated)} appear twice")


def _clean(column: str, cell: str) -> str:
    """A cell as stored: export's `'` removed; spaces around it removed, except in notes."""
    return restore_cell(cell) if column == "note" else restore_cell(cell.strip()).strip()


def _row_problem(
    record: dict[str, str], known: dict[str, GenerationRow], current: datetime
) -> str | None:
    key = record.get("generation_key", "")
    if not key:
        return "generation_key is empty"
    if key not in known:
        return f"unknown generation_key {_shown(key, 70)} (not a response of this run)"
    item_id = record.get("item_id")
    if item_id and item_id != known[key].item_id:
        return f"item_id {_shown(item_id)} does not match the response's item"
    created_at = record.get("created_at")
    checks: Sequence[str | None] = (
        validate_annotator(record.get("annotator", "")),
        validate_label(record.get("label", "")),
        None
        if len(record.get("note", "")) <= MAX_NOTE
        else f"note is longer than {MAX_NOTE} characters",
        validate_created_at(created_at, current) if created_at else None,
    )
    return next((c for c in checks if c), None)
