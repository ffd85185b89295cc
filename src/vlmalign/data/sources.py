"""Dataset sources by name: `NAME:ARGUMENT` as a study's `dataset` (docs/plugins.md).

A source turns its argument into a dataset's items. vlmalign's own is `builtin:` (the bundled
sets); packages add theirs as entry points of the group `vlmalign.datasets`. A plain path is a
JSONL file, and `hf:` a Hugging Face dataset configured by a mapping (data/spec.py): neither is a
registered source. A name that no source has is read as a file path (`a:b.jsonl`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmalign.registries import PluginRegistry


@dataclass(frozen=True)
class SourceData:
    """Items a source read: one record per item in the JSONL schema (docs/datasets.md), what
    identifies this content (stored work and reports are keyed by it: change it when the items
    change), and the folder the items' relative image paths are in."""

    items: Sequence[Mapping[str, Any]]
    sha256: str
    base_dir: Path


#: What a source's `load` returns: a JSONL file to read as any other (line numbers in errors,
#: its bytes' sha256), or the items themselves.
Loaded = Path | SourceData


@dataclass(frozen=True)
class DatasetSource:
    """One registered source, as `vlmalign dataset sources` lists it and `load_dataset` reads it.

    `load(argument)` raises `DatasetError` (vlmalign.errors) for a problem the user can fix; the
    items it returns are validated like a file's, every problem at once.
    """

    name: str
    description: str
    load: Callable[[str], Loaded]
    argument: str = "what the source reads"  # what `name:ARGUMENT` means
    needs: str = "nothing"

    @property
    def argument_required(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return f"{self.name}:<{self.argument}>"


#: Every dataset source by name: vlmalign's own (data/builtin_sources.py) and plugins'.
DATASET_SOURCES: PluginRegistry[DatasetSource] = PluginRegistry(
    "vlmalign.datasets", DatasetSource, "dataset source", builtins="vlmalign.data.builtin_sources"
)


def registered_source(text: str) -> tuple[DatasetSource, str] | None:
    """The source `text` names (`NAME:ARGUMENT`) and its argument, or None for a file path."""
    name, sep, argument = text.partition(":")
    if not sep or not name or name not in DATASET_SOURCES:
        return None
    return DATASET_SOURCES[name], argument
