"""Reading JSONL: one JSON object per line, errors that name file and line.

Hostile input is expected: a file may start with a UTF-8 byte-order mark (Excel writes one), end
its lines with CRLF, hold a U+2028 or U+0085 inside a string (valid JSON, so lines are split on
"\\n" only, never with `str.splitlines`), nest arrays 100,000 deep, or carry lone surrogate
escapes that no UTF-8 file can hold. Each becomes either an accepted line or a one-line error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from vlmalign.data.text import escape_char
from vlmalign.errors import DatasetError

MAX_JSON_DEPTH = 64
"""Arrays/objects nested deeper than this are refused (an item needs 3 levels)."""


def decode_text(name: str, data: bytes, what: str = "dataset") -> str:
    """UTF-8 text (a leading byte-order mark dropped); a DatasetError naming the bad line if not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        message = f"{what} is not UTF-8 text (byte 0x{byte}); save it as UTF-8"
        raise DatasetError(name, line, None, message) from exc


def split_lines(text: str) -> list[str]:
    """JSONL lines: split on "\\n" only (U+2028, U+0085, form feeds... belong to the line), each
    line's trailing "\\r" (CRLF files) dropped."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _structure_problem(data: object) -> str | None:
    """Why a parsed line cannot be used although it is valid JSON, or None."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    bad = escape_char(value[exc.start])
                    return f"unpaired surrogate escape {bad} is not a character; remove it"
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"line is nested too deeply (more than {MAX_JSON_DEPTH} levels)"
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)
    return None


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
            yield number, DatasetError(name, number, None, json_problem(exc))
            continue
        except ValueError:  # an integer of more than sys.get_int_max_str_digits() digits
            message = "invalid JSON: a number has too many digits"
            yield number, DatasetError(name, number, None, message)
            continue
        except RecursionError:
            message = f"line is nested too deeply (more than {MAX_JSON_DEPTH} levels)"
            yield number, DatasetError(name, number, None, message)
            continue
        if not isinstance(data, dict):
            yield number, DatasetError(name, number, None, "each line must be a JSON object")
            continue
        problem = _structure_problem(data)
        if problem is not None:
            yield number, DatasetError(name, number, string_id(data), problem)
            continue
        yield number, data


def json_problem(exc: json.JSONDecodeError) -> str:
    """The whole of what the JSON parser says, placed by column (each line is parsed alone, so
    its "line 1" would mislead): `invalid JSON: Unterminated string starting at column 12`."""
    at = "" if exc.msg.endswith(" at") else " at"
    return f"invalid JSON: {exc.msg}{at} column {exc.colno}"


def string_id(data: dict[str, Any]) -> str | None:
    value = data.get("id")
    return value if isinstance(value, str) else None
