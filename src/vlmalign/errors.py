"""Errors that mean "the user gave bad input": the CLI prints them as one line and exits 2."""

from __future__ import annotations


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
