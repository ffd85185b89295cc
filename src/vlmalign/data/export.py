"""Write a dataset out: as a Hugging Face dataset folder, or as our JSONL with its images.

`hf`: `data/items-00000-of-00001.parquet` (every item field a column, the image an `Image`
feature holding the image's bytes) and a `README.md` whose card says how the folder loads;
`hf:OUT` reads it back to the same items. `jsonl`: `dataset.jsonl` and `images/<sha256>.<ext>`
beside it, referred to by relative paths.

The folder is written under a temporary name next to OUT and renamed when complete, so OUT is
either the old folder or the whole new one, never half of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from vlmalign.data.dataset import Dataset
from vlmalign.data.hf import JSONL_EXPORT_FILE, quiet_progress
from vlmalign.data.images import ImageError, read_image_bytes
from vlmalign.data.schema import Item
from vlmalign.data.text import printable
from vlmalign.errors import VlmalignError

ExportFormat = Literal["hf", "jsonl"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("hf", "jsonl")
HF_SPLIT = "items"  # one split holds every item; each row's `split` column says train or test
HF_DATA_FILE = f"data/{HF_SPLIT}-00000-of-00001.parquet"
JSONL_FILE = JSONL_EXPORT_FILE
IMAGES_DIR = "images"


def export_dataset(dataset: Dataset, out: Path, fmt: str, *, force: bool = False) -> Path:
    """Write `dataset` to the folder `out`; returns what to load (`out`, or its JSONL file).

    A non-empty `out` is refused unless `force`, which replaces it."""
    if fmt not in EXPORT_FORMATS:
        raise VlmalignError(f"unknown export format {fmt!r}; formats: {', '.join(EXPORT_FORMATS)}")
    _check_target(out, force)
    writer: Callable[[Dataset, Path], None] = _write_hf if fmt == "hf" else _write_jsonl
    _write_atomically(out, lambda folder: writer(dataset, folder))
    return out if fmt == "hf" else out / JSONL_FILE


def _check_target(out: Path, force: bool) -> None:
    shown = printable(str(out))
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise VlmalignError(f"{shown} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise VlmalignError(
            f"{shown} is not empty; choose another folder, or --force to replace it"
        )


def _write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}"
    partial = out.with_name(f".{out.name}.partial-{tag}")
    replaced = out.with_name(f".{out.name}.replaced-{tag}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        write(partial)
        if out.exists():
            out.rename(replaced)  # a folder cannot be renamed over a non-empty one
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if replaced.exists() and not out.exists():
            replaced.rename(out)  # put the old folder back
        raise
    shutil.rmtree(replaced, ignore_errors=True)


def _image_bytes(dataset: Dataset, item: Item) -> bytes:
    try:
        return read_image_bytes(item.image, dataset.base_dir)
    except ImageError as exc:
        raise VlmalignError(f"item {item.id!r}: {printable(str(exc))}") from exc


def _extension(data: bytes) -> str:
    """The usual file extension of the image's format (`.png`, `.jpg`), or `.img`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            found = (image.format or "").upper()
    except Exception:  # PIL raises many types; the loader checks images, this only names them
        return ".img"
    usual = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
    if found in usual:
        return usual[found]
    extensions = [ext for ext, fmt in Image.registered_extensions().items() if fmt == found]
    return extensions[0] if extensions else ".img"


def _item_record(item: Item) -> dict[str, Any]:
    """The item as a JSONL line holds it: fields left at their defaults are left out."""
    return item.model_dump(mode="json", exclude_defaults=True)


def _write_jsonl(dataset: Dataset, folder: Path) -> None:
    (folder / IMAGES_DIR).mkdir()
    lines = []
    for item in dataset.items:
        data = _image_bytes(dataset, item)
        name = f"{IMAGES_DIR}/{hashlib.sha256(data).hexdigest()}{_extension(data)}"
        target = folder / name
        if not target.exists():
            target.write_bytes(data)
        record = _item_record(item)
        record["image"] = name
        lines.append(json.dumps(record, ensure_ascii=False))
    (folder / JSONL_FILE).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def hf_features(datasets: Any) -> Any:
    """The exported columns: one per item field."""
    text = datasets.Value("string")
    words = datasets.List(text)
    return datasets.Features(
        {
            "id": text,
            "image": datasets.Image(),
            "question": text,
            "kind": text,
            "choices": words,
            "answer": datasets.Value("int64"),
            "ideal_answer": text,
            "aligned_stance": text,
            "shots": datasets.List({"question": text, "choices": words, "answer": text}),
            "split": text,
            "polarity": text,
            "tags": words,
            "misaligned_answer": text,
        }
    )


def _write_hf(dataset: Dataset, folder: Path) -> None:
    import datasets

    features = hf_features(datasets)
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for item in dataset.items:
        row = item.model_dump(mode="json")
        data = _image_bytes(dataset, item)
        row["image"] = {"bytes": data, "path": f"{item.id}{_extension(data)}"}
        for name in features:
            columns[name].append(row[name])
    with quiet_progress(datasets):
        table = datasets.Dataset.from_dict(columns, features=features)
        (folder / HF_DATA_FILE).parent.mkdir(parents=True)
        table.to_parquet(str(folder / HF_DATA_FILE))
    (folder / "README.md").write_text(_card(dataset), encoding="utf-8")


def _card(dataset: Dataset) -> str:
    """A dataset card whose YAML header tells `datasets` (and the hub) where the data is."""
    source = printable(dataset.source).replace("`", "'")
    return (
        "---\n"
        "configs:\n"
        "- config_name: default\n"
        "  data_files:\n"
        f"  - split: {HF_SPLIT}\n"
        f"    path: data/{HF_SPLIT}-*.parquet\n"
        "---\n\n"
        f"# {len(dataset)} items exported by vlmalign\n\n"
        f"From `{source}` (sha256 `{dataset.sha256}`). Every row is one item: the columns are "
        "vlmalign's item fields, and `image` holds the image's bytes. The split "
        f"`{HF_SPLIT}` holds all items; the `split` column says which are `train` and `test`.\n\n"
        "Load it with `--dataset hf:<this folder>`.\n"
    )
