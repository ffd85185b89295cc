"""`vlmalign judge`: judge responses from any JSONL file and write them back with verdicts.

Each line is one JSON object with the fields of `JudgeInput` (`question` and `response`
required), plus `verdicts` (earlier verdicts, kept; the new one is added) and `meta` (anything
of the caller's, kept as it is). Any other key is refused, with the closest field suggested, so
a misspelt `aligned` is not silently ignored (docs/judge-input.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlmalign.atomic import write_text
from vlmalign.data.dataset import DatasetInvalid
from vlmalign.data.jsonl import decode_text, jsonl_objects, split_lines, string_id
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, VlmalignError, unknown_field, validation_messages
from vlmalign.judges.base import JudgeInput
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.registry import build_judge

KEPT_FIELDS = ("verdicts", "meta")
"""Keys a line may carry beside JudgeInput's: earlier verdicts, and the caller's own data."""
INPUT_FIELDS: tuple[str, ...] = (*JudgeInput.model_fields, *KEPT_FIELDS)
"""Every key a line of a responses file may have."""


def read_responses(path: Path) -> list[tuple[dict[str, Any], JudgeInput]]:
    """Each line's original object and its JudgeInput. A bad file raises DatasetInvalid with
    every problem of every line, each one line naming file:line (and the id)."""
    name = printable(str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise VlmalignError(f"{name}: cannot read responses: {exc.strerror}") from exc
    except ValueError as exc:  # a path with a NUL character
        raise VlmalignError(f"{name}: cannot read responses: bad file name") from exc
    # UTF-8 with or without a byte-order mark; lines split on "\n" only (a U+2028 inside a
    # string is valid JSON), CRLF accepted.
    lines = split_lines(decode_text(name, raw, "responses file"))
    records = []
    problems: list[DatasetError] = []
    for number, data in jsonl_objects(name, lines):
        if isinstance(data, DatasetError):
            problems.append(data)
            continue
        item_id = string_id(data)
        found = line_problems(data)
        fields = {k: v for k, v in data.items() if k in JudgeInput.model_fields}
        try:
            judged = JudgeInput.model_validate(fields)
        except ValidationError as exc:
            found += validation_messages(exc, model=JudgeInput)
        if found:
            problems += [DatasetError(name, number, item_id, message) for message in found]
        else:
            records.append((data, judged))
    if problems:
        raise DatasetInvalid(problems)
    return records


def line_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with a line's keys (each unknown one; `verdicts` not an object)."""
    found = [printable(unknown_field(key, INPUT_FIELDS)) for key in data if key not in INPUT_FIELDS]
    verdicts = data.get("verdicts")
    if verdicts is not None and not isinstance(verdicts, dict):
        found.append("field 'verdicts': must be an object of earlier verdicts, by judge")
    return found


def judge_file(
    judge_name: str,
    input_path: Path,
    output_path: Path,
    batch_size: int = 64,
    options: JudgeOptions | None = None,
) -> int:
    """Judge every line; write the output only once everything is judged.

    `judge_name` is `NAME[:ARGUMENT]` or `LABEL=NAME[:ARGUMENT]`; each line's verdict goes under
    the judge's identity (the label, else the name as given). Relative image references resolve
    against the input file's folder, as a dataset's do.
    """
    records = read_responses(input_path)  # a bad file fails before a judge model loads
    judge = build_judge(judge_name, options, image_base_dir=input_path.resolve().parent)
    lines = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        verdicts = judge.judge([inp for _, inp in batch])
        for (original, _), verdict in zip(batch, verdicts, strict=True):
            merged = dict(original)
            merged["verdicts"] = {
                **(original.get("verdicts") or {}),
                judge.name: verdict.model_dump(),
            }
            lines.append(json.dumps(merged, ensure_ascii=False))
    write_text(output_path, "".join(line + "\n" for line in lines))
    return len(lines)
