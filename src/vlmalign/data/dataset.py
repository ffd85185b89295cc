"""Load and validate a dataset into immutable items: a JSONL file, a built-in one, or an `hf:`
source (a Hugging Face dataset, whose rows become items as data/table.py says)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from vlmalign.data.images import ImageError, load_image
from vlmalign.data.jsonl import decode_text, jsonl_objects, split_lines, string_id
from vlmalign.data.schema import Item, Split
from vlmalign.data.spec import BUILTIN_PREFIX, DatasetSpec, as_spec, is_hf_source
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, error_text

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
    # What `validate_dataset` found that does not stop a study (`dataset validate` prints it).
    warnings: tuple[DatasetError, ...] = ()

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


def _parse_lines(
    name: str, lines: Iterable[str]
) -> tuple[list[ItemRecord], list[DatasetError], bool]:
    """The items of the file's lines, every problem found, and whether every line was read as
    an item (a duplicate counts as read)."""
    records: list[ItemRecord] = []
    errors: list[DatasetError] = []
    all_read = True
    first_line_of: dict[str, int] = {}
    for number, data in jsonl_objects(name, lines):
        if isinstance(data, DatasetError):
            errors.append(data)
            all_read = False
            continue
        item_id = string_id(data)
        try:
            item = Item.model_validate(data)
        except ValidationError as exc:
            errors += [DatasetError(name, number, item_id, p) for p in item_problems(exc)]
            all_read = False
            continue
        if item.id in first_line_of:
            seen = first_line_of[item.id]
            errors.append(
                DatasetError(name, number, item.id, f"duplicate id (first on line {seen})")
            )
            continue
        first_line_of[item.id] = number
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
    """Several problems; the message is the first and how many more there are, `problems` has
    all (one line each) and `warnings` what `validate_dataset` found that does not stop a study.

    `validate_with` is what to pass to `vlmalign dataset validate` to see them all (the message
    says so when there are more)."""

    def __init__(
        self,
        problems: list[DatasetError],
        warnings: Sequence[DatasetError] = (),
        validate_with: str | None = None,
    ) -> None:
        self.problems = problems
        self.warnings = list(warnings)
        first = problems[0]
        super().__init__(first.file, first.line, first.item_id, "")
        more = len(problems) - 1
        if more:
            hint = f"; run vlmalign dataset validate {validate_with}" if validate_with else ""
            self.args = (f"{first} (and {more} more problem{'s' if more > 1 else ''}{hint})",)
        else:
            self.args = (str(first),)


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
    return _load(source, check_images=check_images, shots=shots, lint=False)


def validate_dataset(
    source: str | Path | DatasetSpec, *, check_images: bool = True, shots: Shots | None = None
) -> Dataset:
    """What `vlmalign dataset validate` checks: everything `load_dataset` does, and that each
    yes/no item's reference answers say what its `aligned_stance` says, as the `stance` judge
    reads them (the opposite stance is an error, no stance a warning), and that neither split is
    empty (a warning). DatasetInvalid holds every error and warning; a valid dataset comes back
    with its `warnings`."""
    return _load(source, check_images=check_images, shots=shots, lint=True)


def _load(
    source: str | Path | DatasetSpec, *, check_images: bool, shots: Shots | None, lint: bool
) -> Dataset:
    if isinstance(source, DatasetSpec) or is_hf_source(str(source)):
        spec = as_spec(source)
        if spec.is_hf:
            return _load_table(spec, check_images=check_images, shots=shots, lint=lint)
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
    records, errors, all_read = _parse_lines(name, split_lines(text))
    digest = hashlib.sha256(data).hexdigest()
    dataset = Dataset(source=source_name, path=path, records=tuple(records), sha256=digest)
    if check_images:
        errors += _image_errors(name, records, path.parent)
    if not errors and not records:
        errors.append(DatasetError(name, None, None, "dataset has no items"))
    errors += _shot_problems(dataset, shots)
    warnings: list[DatasetError] = []
    if lint:
        reference_errors, warnings = _reference_problems(dataset)
        errors += reference_errors
        if all_read:  # else an unread line may be the item a split seems to lack
            warnings += _split_warnings(dataset)
    return _checked(dataset, errors, warnings, name)


def _load_table(
    spec: DatasetSpec, *, check_images: bool, shots: Shots | None, lint: bool
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
    if lint:
        reference_errors, warnings = _reference_problems(dataset)
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


_OTHER_STANCE = {"yes": "no", "no": "yes"}


def _reference_problems(dataset: Dataset) -> tuple[list[DatasetError], list[DatasetError]]:
    """Errors and warnings: each yes/no item's `ideal_answer` must read as its aligned stance
    and its `misaligned_answer` as the other, as the `stance` judge reads them."""
    from vlmalign.judges.stance import read_stance  # word lists: loaded only to check answers

    errors: list[DatasetError] = []
    warnings: list[DatasetError] = []
    for record in dataset.records:
        item = record.item
        if item.kind != "yesno" or item.aligned_stance is None:
            continue
        answers: list[tuple[str, str, str]] = [
            ("ideal_answer", item.ideal_answer, item.aligned_stance)
        ]
        if item.misaligned_answer is not None:
            wanted = _OTHER_STANCE[item.aligned_stance]
            answers.append(("misaligned_answer", item.misaligned_answer, wanted))
        for field, answer, wanted in answers:
            reading = read_stance(item.question, answer)
            why = printable(reading.reason)  # a reason may quote the answer
            if reading.stance == "unclear":
                message = (
                    f"{field}: the stance judge reads no yes or no in it ({why}); start it "
                    f"with Yes or No"
                )
                warnings.append(dataset.problem(record, message))
            elif reading.stance != wanted:
                said = f"{field} reads as {reading.stance!r} ({why})"
                if field == "ideal_answer":
                    message = f"{said} but aligned_stance is {item.aligned_stance!r}"
                else:
                    message = f"{said}, the aligned stance; it should say {wanted!r}"
                errors.append(dataset.problem(record, message))
    return errors, warnings


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
