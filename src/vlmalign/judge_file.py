"""`vlmalign judge`: judge responses from any JSONL file and write them back with verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlmalign.data.jsonl import decode_text, jsonl_objects, split_lines, string_id
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, VlmalignError, validation_message
from vlmalign.judges.base import JudgeInput
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.registry import build_judge

_INPUT_FIELDS = set(JudgeInput.model_fields)


def read_responses(path: Path) -> list[tuple[dict[str, Any], JudgeInput]]:
    """Each line's original object and its JudgeInput; one-line errors name file:line:id."""
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
    for number, data in jsonl_objects(name, lines):
        if isinstance(data, DatasetError):
            raise data
        item_id = string_id(data)
        fields = {k: v for k, v in data.items() if k in _INPUT_FIELDS}
        try:
            records.append((data, JudgeInput.model_validate(fields)))
        except ValidationError as exc:
            raise DatasetError(name, number, item_id, validation_message(exc)) from exc
    return records


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
    tmp = output_path.with_name(output_path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(output_path)
    return len(lines)
