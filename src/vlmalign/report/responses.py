"""Every response of a run, one row each, with every judge's verdict and the human labels.

`vlmalign responses export` writes these rows as JSONL or CSV. They are the run's responses as
the report reads them (`run_data.load_run`: the newest finished study run), in the store's
order, with the same columns in both formats:

- the response: `run` (the run directory's name), `item_id`, `split`, `shots`,
  `sample_index`, `model` (the model's name, e.g. `mock:ideal`), `variant` (base/finetuned),
  `prompt`, `response`, and what an endpoint reported (`finish_reason`, `prompt_tokens`,
  `completion_tokens`, `refused`);
- per judge J of the run, in the run's judge order: `J.aligned`, `J.score`, `J.answer`,
  `J.explanation`;
- `human` (the majority of the annotators' latest labels: aligned, misaligned, unsure or tie),
  `labels` (each annotator's latest label) and `generation_key`.

JSONL keeps types: `J.aligned` is true, false or null (unclear), a missing value is null, and
`labels` is a list of `{annotator, label, note}`. CSV is text: `J.aligned` is `aligned`,
`misaligned` or `unclear`, `refused` is `true`/`false`, a missing value is an empty cell, and
`labels` is `annotator:label` joined by `; ` (notes are in `vlmalign labels export`). Every CSV
cell is quoted, and one a spreadsheet would run as a formula gets a leading `'`
(`labels.neutralise_cell`).

Rows are written one at a time to the stream, so no output is held in memory whole.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from vlmalign.judges.human import human_verdicts
from vlmalign.labels import neutralise_cell
from vlmalign.report.run_data import RunData
from vlmalign.store import GenerationRow, JudgmentRow

FORMATS = ("jsonl", "csv")
RESPONSE_COLUMNS = (
    "run",
    "item_id",
    "split",
    "shots",
    "sample_index",
    "model",
    "variant",
    "prompt",
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "refused",
)
VERDICT_FIELDS = ("aligned", "score", "answer", "explanation")
LAST_COLUMNS = ("human", "labels", "generation_key")
ALIGNED_WORDS = {True: "aligned", False: "misaligned", None: "unclear"}


def columns(judges: list[str]) -> list[str]:
    """The columns of an export of a run with these judges, in order."""
    per_judge = [f"{judge}.{name}" for judge in judges for name in VERDICT_FIELDS]
    return [*RESPONSE_COLUMNS, *per_judge, *LAST_COLUMNS]


@dataclass(frozen=True)
class ResponseLabel:
    """One annotator's latest label of a response."""

    annotator: str
    label: str
    note: str


@dataclass(frozen=True)
class ResponseRecord:
    """One response with everything said about it."""

    run: str
    generation: GenerationRow
    verdicts: dict[str, JudgmentRow | None]  # judge -> verdict, None when it has none
    human: str | None  # aligned | misaligned | unsure | tie; None when nobody labelled it
    labels: tuple[ResponseLabel, ...]


def response_records(run: RunData) -> Iterator[ResponseRecord]:
    """The run's responses in the store's order, one record each."""
    majority = human_verdicts(run.labels)
    by_response: dict[str, list[ResponseLabel]] = defaultdict(list)
    for row in run.labels:  # already each annotator's latest label
        by_response[row.generation_key].append(ResponseLabel(row.annotator, row.label, row.note))
    for generation in run.generations:
        key = generation.key
        verdict = majority.get(key)
        yield ResponseRecord(
            run.name,
            generation,
            {judge: rows.get(key) for judge, rows in run.verdicts.items()},
            verdict.status if verdict else None,
            tuple(sorted(by_response.get(key, ()), key=lambda label: label.annotator)),
        )


def _response_values(record: ResponseRecord) -> list[Any]:
    g = record.generation
    return [
        record.run,
        g.item_id,
        g.split,
        g.shots,
        g.sample_index,
        g.model,
        g.variant,
        g.prompt,
        g.response,
        g.finish_reason,
        g.prompt_tokens,
        g.completion_tokens,
        g.refused,
    ]


def json_object(record: ResponseRecord) -> dict[str, Any]:
    """A record as one JSONL object, keys in column order."""
    values = _response_values(record)
    for verdict in record.verdicts.values():
        values += (
            [verdict.aligned, verdict.score, verdict.answer, verdict.explanation]
            if verdict
            else [None] * len(VERDICT_FIELDS)
        )
    values += [
        record.human,
        [{"annotator": x.annotator, "label": x.label, "note": x.note} for x in record.labels],
        record.generation.key,
    ]
    return dict(zip(columns(list(record.verdicts)), values, strict=True))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_cells(record: ResponseRecord) -> list[str]:
    """A record as CSV cells (not yet neutralised), in column order."""
    cells = [_text(v) for v in _response_values(record)]
    for verdict in record.verdicts.values():
        if verdict is None:
            cells += [""] * len(VERDICT_FIELDS)
            continue
        cells += [
            ALIGNED_WORDS[verdict.aligned],
            _text(verdict.score),
            _text(verdict.answer),
            _text(verdict.explanation),
        ]
    labels = "; ".join(f"{x.annotator}:{x.label}" for x in record.labels)
    return [*cells, _text(record.human), labels, record.generation.key]


def write_jsonl(run: RunData, stream: TextIO) -> int:
    """Write one JSON object per response, one a line (UTF-8 as is); returns the count."""
    count = 0
    for record in response_records(run):
        stream.write(json.dumps(json_object(record), ensure_ascii=False) + "\n")
        count += 1
    return count


def write_csv(run: RunData, stream: TextIO) -> int:
    """Write a header and one row per response, every cell quoted and formulas neutralised;
    returns the number of responses."""
    # Every cell quoted: a response may hold a bare CR, which an unquoted cell would end at.
    writer = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow([neutralise_cell(name) for name in columns(run.judges)])
    count = 0
    for record in response_records(run):
        writer.writerow([neutralise_cell(cell) for cell in csv_cells(record)])
        count += 1
    return count


def write_responses(run: RunData, stream: TextIO, fmt: str) -> int:
    """Write the run's responses in `fmt` (one of `FORMATS`); returns the count."""
    if fmt == "csv":
        return write_csv(run, stream)
    if fmt == "jsonl":
        return write_jsonl(run, stream)
    raise ValueError(f"unknown format {fmt!r}")
