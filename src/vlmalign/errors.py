"""Errors that mean "the user gave bad input": the CLI prints them as one line and exits 2."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from vlmalign.data.text import printable

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError
    from pydantic_core import ErrorDetails


def shown_path(path: object) -> str:
    """A path as one line of text that can always be printed: a name that is not UTF-8 (argv
    and the file system give its bytes as surrogate escapes, `ds-\\udcff.jsonl`) shows those
    bytes as `\\xff`, and control characters are escaped (`data.text.printable`)."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if isinstance(text, bytes):
        return printable(text.decode("utf-8", "backslashreplace"))
    if is_utf8(text):
        return printable(text)
    try:
        raw = os.fsencode(text)  # surrogate escapes back to the bytes they stand for
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return printable(text)
    return printable(raw.decode("utf-8", "backslashreplace"))


def is_utf8(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (a file name in another encoding cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_name_problem(path: object, what: str) -> str | None:
    """Why `path` cannot be recorded (the store, reports and artifacts hold UTF-8 text), or
    None when it can."""
    text = str(path)
    if is_utf8(text):
        return None
    return (
        f"{what} {shown_path(path)} is not UTF-8 text (a name in another encoding); "
        "rename it: vlmalign records it in the store and reports"
    )


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

    def __init__(self, path: object, message: str, problem: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem  # "locked", "full", "damaged", ...: `store.connection` sorts them
        super().__init__(f"{shown_path(path)} {message}")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'tags'?)` for the known name closest to a mistyped one, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_field(name: str, known: Iterable[str]) -> str:
    """`unknown field 'tag' (did you mean 'tags'?)`."""
    return f"unknown field {name!r}{did_you_mean(name, known)}"


def validation_message(
    exc: ValidationError,
    where: str | None = None,
    *,
    option_names: bool = False,
    model: type[BaseModel] | None = None,
) -> str:
    """A pydantic validation error as the one line a user reads: `where: field 'x': what`.

    Only the first problem is told (the fix for it often fixes the rest;
    `validation_messages` tells every one). Our validators' own words come without pydantic's
    "Value error, " prefix. With `option_names`, the field is named as the command-line option
    that set it (`--batch-size: ...`). With `model` (the model validated), an unknown field
    names the closest known one. Control characters from the input are escaped, so the message
    stays one line.
    """
    text = error_text(exc.errors()[0], option_names=option_names, model=model)
    return printable(text if where is None else f"{where}: {text}")


def validation_messages(
    exc: ValidationError, where: str | None = None, *, model: type[BaseModel] | None = None
) -> list[str]:
    """Every problem of a validation error, one line each, as `validation_message` writes one."""
    texts = [error_text(error, model=model) for error in exc.errors()]
    return [printable(text if where is None else f"{where}: {text}") for text in texts]


def error_text(
    error: ErrorDetails, *, option_names: bool = False, model: type[BaseModel] | None = None
) -> str:
    """One problem of a pydantic validation error in our words (not yet escaped)."""
    location = [str(part) for part in error["loc"]]
    cause = error.get("ctx", {}).get("error")
    reason = str(cause) if error["type"] == "value_error" and cause else error["msg"]
    field = ".".join(location)
    if option_names and location:
        return f"--{location[-1].replace('_', '-')}: {reason}"
    if not location:  # a check of the whole model: its message says what is wrong
        return reason
    if error["type"] == "missing":
        return f"missing field {field!r}"
    if error["type"] == "extra_forbidden":
        known = _fields_at(model, error["loc"][:-1]) if model is not None else ()
        return f"unknown field {field!r}{did_you_mean(location[-1], known)}"
    return f"field {field!r}: {reason}"


def _fields_at(model: type[BaseModel], path: Sequence[int | str]) -> tuple[str, ...]:
    """The fields of the model found at `path` inside `model` (`shots.0` of an item: a shot's);
    none where the path leads elsewhere (a union's branch, a dict)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):  # an index into a list or tuple of models
            continue
        info = current.model_fields.get(part)
        current = _model_in(info.annotation) if info is not None else None
        if current is None:
            return ()
    return tuple(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model an annotation holds (`tuple[Shot, ...]` -> Shot), else None."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for m in map(_model_in, get_args(annotation)) if m is not None}
    return found.pop() if len(found) == 1 else None
