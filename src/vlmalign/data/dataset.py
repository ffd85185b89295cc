"""Load and validate a dataset into immutable items: a JSONL file, a registered source's
(`builtin:`, or a plugin's: data/sources.py), or an `hf:` source (a Hugging Face dataset, whose
rows become items as data/table.py says)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlmalign.data.builtin_sources import BUILTIN_DATASETS
from vlmalign.data.images import ImageError, load_image
from vlmalign.data.jsonl import decode_text, jsonl_objects, split_lines, string_id
from vlmalign.data.records import AnswerCheck, Dataset, DatasetInvalid, ItemRecord
from vlmalign.data.schema import Item, Split
from vlmalign.data.sources import DatasetSource, Loaded, SourceData, registered_source
from vlmalign.data.spec import BUILTIN_PREFIX, DatasetSpec, as_spec, is_hf_source
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, VlmalignError, error_text

__all__ = [
    "BUILTIN_DATASETS",
    "BUILTIN_PREFIX",
    "Dataset",
    "DatasetInvalid",
    "ItemRecord",
    "check_shots",
    "item_problems",
    "load_dataset",
    "resolve_source",
    "validate_dataset",
]


def resolve_source(source: str | Path) -> Path:
    """`builtin:NAME` (or another source that reads a JSONL file) or a file path -> the file."""
    text = str(source)
    found = registered_source(text)
    if found is not None:
        loaded = _loaded(text, *found)
        if isinstance(loaded, Path):
            return loaded
        raise DatasetError(printable(text), None, None, "this source reads no file")
    return _user_path(text)


def _user_path(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # `~nosuchuser/...`
        raise DatasetError(printable(text), None, None, "cannot find that home folder") from exc


def _loaded(text: str, source: DatasetSource, argument: str) -> Loaded:
    """What a registered source read; its own failure as one line, not a traceback."""
    try:
        loaded = source.load(argument)
    except VlmalignError:
        raise
    except Exception as exc:  # a plugin's code: whatever it raises is named, not shown raw
        why = printable(f"{type(exc).__name__}: {exc}".splitlines()[0])
        message = f"dataset source {source.name!r} failed: {why}"
        raise DatasetError(printable(text), None, None, message) from exc
    if not isinstance(loaded, Path | SourceData):
        found = type(loaded).__name__
        message = f"dataset source {source.name!r} returned a {found}, not a Path or SourceData"
        raise DatasetError(printable(text), None, None, message)
    return loaded


def _parse_lines(
    name: str, lines: Iterable[str]
) -> tuple[list[ItemRecord], list[DatasetError], bool]:
    """The items of the file's lines, every problem found, and whether every line was read as
    an item (a duplicate counts as read)."""
    return _parse_objects(name, jsonl_objects(name, lines), rows=False)


def _parse_objects(
    name: str, numbered: Iterable[tuple[int, Any]], rows: bool
) -> tuple[list[ItemRecord], list[DatasetError], bool]:
    """Items from (line or row, object) pairs: every problem found (naming the line, or the
    row counted from 0), and whether every object was read as an item."""

    def problem(number: int, item_id: str | None, message: str) -> DatasetError:
        if rows:
            return DatasetError(name, None, item_id, f"row {number}: {message}")
        return DatasetError(name, number, item_id, message)

    where = "row" if rows else "line"
    records: list[ItemRecord] = []
    errors: list[DatasetError] = []
    all_read = True
    first_of: dict[str, int] = {}
    for number, data in numbered:
        if isinstance(data, DatasetError):
            errors.append(data)
            all_read = False
            continue
        if not isinstance(data, Mapping):
            errors.append(problem(number, None, f"an item is an object, not {type(data).__name__}"))
            all_read = False
            continue
        item_id = string_id(dict(data))
        try:
            item = Item.model_validate(data)
        except ValidationError as exc:
            errors += [problem(number, item_id, p) for p in item_problems(exc)]
            all_read = False
            continue
        if item.id in first_of:
            message = f"duplicate id (first on {where} {first_of[item.id]})"
            errors.append(problem(number, item.id, message))
            continue
        first_of[item.id] = number
        records.append(ItemRecord(item, number))
    return records, errors, all_read


# A field that one of these fields decides is required (or defaulted) only when they are valid:
# its "missing" follows from their problem (a choice item whose choices are bad has no default
# ideal answer), so it is not told beside it.
_DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "answer": ("kind",),
    "ideal_answer": ("kind", "choices", "answer"),
}


def item_problems(exc: ValidationError) -> list[str]:
    """Every problem of an item that failed validation, one line each (escaped), without the
    ones that only follow from another."""
    errors = exc.errors()
    bad = {str(e["loc"][0]) for e in errors if e["loc"]}
    kept = [
        e
        for e in errors
        if not (
            e["type"] == "missing"
            and len(e["loc"]) == 1
            and bad & set(_DEPENDS_ON.get(str(e["loc"][0]), ()))
        )
    ]
    return [printable(error_text(e, model=Item)) for e in kept]


def _image_errors(dataset: Dataset) -> list[DatasetError]:
    errors = []
    for record in dataset.records:
        try:
            load_image(record.item.image, dataset.base_dir)
        except ImageError as exc:
            errors.append(dataset.problem(record, printable(str(exc))))  # it quotes the file
    return errors


Shots = int | Mapping[Split, int]
"""Shots every item must have: one number for all, or one per split (items without a split are
`test` items)."""


def load_dataset(
    source: str | Path | DatasetSpec | Dataset,
    *,
    check_images: bool = True,
    shots: Shots | None = None,
) -> Dataset:
    """Parse and validate every item (and, with `shots`, that each has that many shots); raise
    DatasetInvalid listing every problem found. A Dataset already loaded is returned as it is
    (after the shots check)."""
    if isinstance(source, Dataset):
        problems = _shot_problems(source, shots)
        if problems:
            raise DatasetInvalid(problems)
        return source
    return _load(source, check_images=check_images, shots=shots, lint=None)


def validate_dataset(
    source: str | Path | DatasetSpec,
    *,
    check_images: bool = True,
    shots: Shots | None = None,
    answers: AnswerCheck | None = None,
) -> Dataset:
    """`load_dataset`'s checks, plus each item's reference answers read by `answers` (errors and
    warnings; the stance check of `vlmalign dataset validate` is `dataset_checks`'s) and that
    neither split is empty (a warning). DatasetInvalid holds every error and warning; a valid
    dataset comes back with its `warnings`."""
    return _load(source, check_images=check_images, shots=shots, lint=answers or _no_check)


def _no_check(dataset: Dataset) -> tuple[list[DatasetError], list[DatasetError]]:
    return [], []


def _load(
    source: str | Path | DatasetSpec,
    *,
    check_images: bool,
    shots: Shots | None,
    lint: AnswerCheck | None,
) -> Dataset:
    if isinstance(source, DatasetSpec) or is_hf_source(str(source)):
        spec = as_spec(source)
        if spec.is_hf:
            return _load_table(spec, check_images=check_images, shots=shots, lint=lint)
        source = spec.source
    text = str(source)
    found = registered_source(text)
    if found is None:
        path = _user_path(text)
        source_name = str(path)
    else:
        loaded = _loaded(text, *found)
        if isinstance(loaded, SourceData):
            return _load_items(text, loaded, check_images=check_images, shots=shots, lint=lint)
        path, source_name = loaded, text
    name = printable(source_name)  # error messages name the file; its name may be hostile too
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(name, None, None, f"cannot read dataset: {exc.strerror}") from exc
    except ValueError as exc:  # a path with a NUL character
        raise DatasetError(name, None, None, "cannot read dataset: bad file name") from exc
    text = decode_text(name, data)  # a leading byte-order mark (Excel) is dropped
    records, errors, all_read = _parse_lines(name, split_lines(text))
    digest = hashlib.sha256(data).hexdigest()
    dataset = Dataset(source=source_name, path=path, records=tuple(records), sha256=digest)
    return _finished(dataset, errors, all_read, check_images, shots, lint, name)


def _load_items(
    text: str,
    loaded: SourceData,
    *,
    check_images: bool,
    shots: Shots | None,
    lint: AnswerCheck | None,
) -> Dataset:
    """A registered source's items, checked as a file's lines are (errors name rows)."""
    name = printable(text)
    records, errors, all_read = _parse_objects(name, enumerate(loaded.items), rows=True)
    dataset = Dataset(
        source=text,
        path=loaded.base_dir,
        records=tuple(records),
        sha256=loaded.sha256,
        image_dir=loaded.base_dir,
        rows=True,
    )
    return _finished(dataset, errors, all_read, check_images, shots, lint, name)


def _finished(
    dataset: Dataset,
    errors: list[DatasetError],
    all_read: bool,
    check_images: bool,
    shots: Shots | None,
    lint: AnswerCheck | None,
    name: str,
) -> Dataset:
    """The checks every dataset read from items gets: images, shots, and with `lint` (the
    reference answers' check) what `validate_dataset` adds."""
    if check_images:
        errors += _image_errors(dataset)
    if not errors and not dataset.records:
        errors.append(DatasetError(name, None, None, "dataset has no items"))
    errors += _shot_problems(dataset, shots)
    warnings: list[DatasetError] = []
    if lint is not None:
        reference_errors, warnings = lint(dataset)
        errors += reference_errors
        if all_read:  # else an unread line may be the item a split seems to lack
            warnings += _split_warnings(dataset)
    return _checked(dataset, errors, warnings, name)


def _load_table(
    spec: DatasetSpec, *, check_images: bool, shots: Shots | None, lint: AnswerCheck | None
) -> Dataset:
    from vlmalign.data.table import load_table  # `datasets`: only for hf: sources

    plain = spec == as_spec(spec.source)  # no mapping: `dataset validate SOURCE` reads the same
    validate_with = printable(spec.source) if plain else "on the study config"
    try:
        dataset = load_table(spec, check_images=check_images)  # its rows' problems, all at once
    except DatasetInvalid as exc:
        raise DatasetInvalid(exc.problems, exc.warnings, validate_with) from exc
    errors = _shot_problems(dataset, shots)
    warnings: list[DatasetError] = []
    if lint is not None:
        reference_errors, warnings = lint(dataset)
        errors += reference_errors
        warnings += _split_warnings(dataset)
    return _checked(dataset, errors, warnings, validate_with)


def _checked(
    dataset: Dataset, errors: list[DatasetError], warnings: list[DatasetError], validate_with: str
) -> Dataset:
    """The dataset with its warnings, or DatasetInvalid with every problem in line order."""
    warnings.sort(key=lambda e: e.line or 0)
    if errors:
        errors.sort(key=lambda e: e.line or 0)  # stable: an item's problems in the order found
        raise DatasetInvalid(errors, warnings, validate_with)
    return replace(dataset, warnings=tuple(warnings))


def _shot_problems(dataset: Dataset, shots: Shots | None) -> list[DatasetError]:
    """Items with fewer shots than asked of their split."""
    if shots is None:
        return []
    problems = []
    for record in dataset.records:
        split = record.item.split or "test"
        needed = shots if isinstance(shots, int) else shots.get(split, 0)
        if len(record.item.shots) < needed:
            message = (
                f"a {needed}-shot condition needs {needed} shots but the item has "
                f"{len(record.item.shots)}"
            )
            problems.append(dataset.problem(record, message))
    return problems


def _split_warnings(dataset: Dataset) -> list[DatasetError]:
    """`split 'test' has no items`, for each of train and test with none."""
    if not dataset.records:
        return []
    name = printable(dataset.source)
    splits: tuple[Split, ...] = ("train", "test")
    return [
        DatasetError(name, None, None, f"split {split!r} has no items")
        for split in splits
        if not dataset.split(split)
    ]


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
        raise DatasetInvalid(problems, validate_with=printable(dataset.source))
