"""Errors that mean "the user gave bad input": the CLI prints them as one line and exits 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmalign.data.text import printable

if TYPE_CHECKING:
    from pydantic import ValidationError


class VlmalignError(Exception):
    """An expected error with a one-line message that says what, where and how to fix it."""


class DatasetError(VlmalignError):
    """A dataset file is malformed. The message names file, line and item id."""

    def __init__(self, file: str, line: int | None, item_id: str | None, message: str) -> None:
        self.file, self.line, self.item_id = file, line, item_id
        where = file if line is None else f"{file}:{line}"
        item = f" item {item_id!r}:" if item_id else ""
        super().__init__(f"{where}:{item} {message}")


class ConfigError(VlmalignError):
    """A study configuration is invalid."""


class ModelError(VlmalignError):
    """A model cannot be built or loaded (unknown name, missing weights, missing package)."""


class StoreError(VlmalignError):
    """A run store (study.sqlite) cannot be used: corrupt, newer, locked, read-only, disk full.

    The message names the store and says what to do."""

    def __init__(self, path: object, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path} {message}")


def validation_message(
    exc: ValidationError, where: str | None = None, *, option_names: bool = False
) -> str:
    """A pydantic validation error as the one line a user reads: `where: field 'x': what`.

    Only the first problem is told (the fix for it often fixes the rest). Our validators' own
    words come without pydantic's "Value error, " prefix. With `option_names`, the field is
    named as the command-line option that set it (`--batch-size: ...`). Control characters
    from the input are escaped, so the message stays one line.
    """
    first = exc.errors()[0]
    location = [str(part) for part in first["loc"]]
    error = first.get("ctx", {}).get("error")
    reason = str(error) if first["type"] == "value_error" and error else first["msg"]
    field = ".".join(location)
    if option_names and location:
        text = f"--{location[-1].replace('_', '-')}: {reason}"
    elif not location:  # a check of the whole model: its message says what is wrong
        text = reason
    elif first["type"] == "missing":
        text = f"missing field {field!r}"
    elif first["type"] == "extra_forbidden":
        text = f"unknown field {field!r}"
    else:
        text = f"field {field!r}: {reason}"
    return printable(text if where is None else f"{where}: {text}")
