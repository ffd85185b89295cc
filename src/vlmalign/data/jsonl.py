"""Reading JSONL: one JSON object per line, errors that name file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from vlmalign.errors import DatasetError


def jsonl_objects(
    name: str, lines: Iterable[str]
) -> Iterator[tuple[int, dict[str, Any] | DatasetError]]:
    """(line number, object) per non-blank line, or a DatasetError in place of a bad line."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, DatasetError(name, number, None, f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(data, dict):
            yield number, DatasetError(name, number, None, "each line must be a JSON object")
            continue
        yield number, data


def string_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    return value if isinstance(value, str) else None
