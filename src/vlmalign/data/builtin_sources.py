"""The dataset sources that come with vlmalign, registered in pyproject.toml under the
entry-point group `vlmalign.datasets`, as a plugin's would be (docs/plugins.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vlmalign.data.sources import DatasetSource
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError

BUILTIN_DATASETS = ("moral-vqa-40",)


def packaged_file(name: str) -> Path:
    """The bundled JSONL file of the built-in dataset `name`."""
    if name not in BUILTIN_DATASETS:
        known = ", ".join(f"builtin:{n}" for n in BUILTIN_DATASETS)
        message = f"unknown built-in dataset; known: {known}"
        raise DatasetError(printable(f"builtin:{name}"), None, None, message)
    return Path(str(resources.files("vlmalign.data") / "builtin" / f"{name}.jsonl"))


builtin = DatasetSource(
    "builtin",
    "the datasets bundled with vlmalign: moral-vqa-40 (the paper's 40 items, 30 train + 10 test)",
    packaged_file,
    argument=" | ".join(BUILTIN_DATASETS),
)
