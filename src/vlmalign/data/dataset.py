"""Load and validate a dataset into immutable items: a JSONL file, a built-in one, or an `hf:`
source (a Hugging Face dataset, whose rows become items as data/table.py says)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from vlmalign.data.images import ImageError, load_image
from vlmalign.data.jsonl import decode_text, jsonl_objects, split_lines, string_id
from vlmalign.data.schema import Item, Split
from vlmalign.data.spec import DatasetSpec, as_spec, is_hf_source
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, validation_message

BUILTIN_PREFIX = "builtin:"
BUILTIN_DATASETS = ("moral-vqa-40",)


@dataclass(frozen=True)
class ItemRecord:
    """An item with where it came from (for error messages): its line in a JSONL file, or its
    row (counted from 0) in an `hf:` dataset."""

    item: Item
    line: int


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: items in file order, the file they came from and a content hash."""

    source: str
    path: Path
    records: tuple[ItemRecord, ...]
    sha256: str
    image_dir: Path | None = None  # image paths are relative to it (default: the file's folder)
    rows: bool = False  # records are rows of an `hf:` dataset, not lines of a file

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(r.item for r in self.records)

    @property
    def base_dir(self) -> Path:
        return self.image_dir if self.image_dir is not None else self.path.parent

    def problem(self, record: ItemRecord, message: str) -> DatasetError:
        """An error about one item, naming its line (JSONL) or row (`hf:`)."""
        name = printable(self.source)
        if self.rows:
            return DatasetError(name, None, record.item.id, f"row {record.line}: {message}")
        return DatasetError(name, record.line, record.item.id, message)

    def split(self, split: Split | None) -> tuple[Item, ...]:
        """Items of one split; items without a split count as `test`."""
        if split is None:
            return self.items
        return tuple(i for i in self.items if (i.split or "test") == split)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)


def resolve_source(source: str | Path) -> Path:
    """`builtin:NAME` or a file path -> the JSONL file."""
    text = str(source)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_DATASETS:
            known = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_DATASETS)
            message = f"unknown built-in dataset; known: {known}"
            raise DatasetError(printable(text), None, None, message)
        ref = resources.files("vlmalign.data") / "builtin" / f"{name}.jsonl"
        return Path(str(ref))
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # `~nosuchuser/...`
        raise DatasetError(printable(text), None, None, "cannot find that home folder") from exc


def _parse_lines(name: str, lines: Iterable[str]) -> tuple[list[ItemRecord], list[DatasetError]]:
    records: list[ItemRecord] = []
    errors: list[DatasetError] = []
    first_line_of: dict[str, int] = {}
    for number, data in jsonl_objects(name, lines):
        if isinstance(data, DatasetError):
            errors.append(data)
            continue
        item_id = string_id(data)
        try:
            item = Item.model_validate(data)
        except ValidationError as exc:
            errors.append(DatasetError(name, number, item_id, validation_message(exc)))
            continue
        if item.id in first_line_of:
            seen = first_line_of[item.id]
            errors.append(
                DatasetError(name, number, item.id, f"duplicate id (first on line {seen})")
            )
            continue
        first_line_of[item.id] = number
        records.append(ItemRecord(item, number))
    return records, errors


def _image_errors(name: str, records: Sequence[ItemRecord], base_dir: Path) -> list[DatasetError]:
    errors = []
    for record in records:
        try:
            load_image(record.item.image, base_dir)
        except ImageError as exc:
            message = printable(str(exc))  # the reference is the file's text
            errors.append(DatasetError(name, record.line, record.item.id, message))
    return errors


class DatasetInvalid(DatasetError):
    """Several problems; the message is the first, `problems` has all (one line each)."""

    def __init__(self, problems: list[DatasetError]) -> None:
        self.problems = problems
        first = problems[0]
        super().__init__(first.file, first.line, first.item_id, "")
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        self.args = (str(first) + more,)


def load_dataset(source: str | Path | DatasetSpec, *, check_images: bool = True) -> Dataset:
    """Parse and validate every item; raise DatasetInvalid listing every problem found."""
    if isinstance(source, DatasetSpec) or is_hf_source(str(source)):
        spec = as_spec(source)
        if spec.is_hf:
            from vlmalign.data.table import load_table  # `datasets`: only for hf: sources

            return load_table(spec, check_images=check_images)
        source = spec.source
    path = resolve_source(source)
    source_name = str(source) if str(source).startswith(BUILTIN_PREFIX) else str(path)
    name = printable(source_name)  # error messages name the file; its name may be hostile too
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(name, None, None, f"cannot read dataset: {exc.strerror}") from exc
    except ValueError as exc:  # a path with a NUL character
        raise DatasetError(name, None, None, "cannot read dataset: bad file name") from exc
    text = decode_text(name, data)  # a leading byte-order mark (Excel) is dropped
    records, errors = _parse_lines(name, split_lines(text))
    if check_images:
        errors += _image_errors(name, records, path.parent)
    if not errors and not records:
        errors.append(DatasetError(name, None, None, "dataset has no items"))
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        raise DatasetInvalid(errors)
    digest = hashlib.sha256(data).hexdigest()
    return Dataset(source=source_name, path=path, records=tuple(records), sha256=digest)


def check_shots(dataset: Dataset, shots: int, split: Split | None = None) -> None:
    """Every item that will be asked with `shots` shots must have at least that many."""
    problems = [
        dataset.problem(
            r, f"a {shots}-shot condition needs {shots} shots but the item has {len(r.item.shots)}"
        )
        for r in dataset.records
        if (split is None or (r.item.split or "test") == split) and len(r.item.shots) < shots
    ]
    if problems:
        raise DatasetInvalid(problems)
