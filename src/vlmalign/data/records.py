"""What a loaded dataset is: validated items with where each came from, and the error that
lists every problem of one (shared by every way a dataset is read)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlmalign.data.schema import Item, Split
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError


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


AnswerCheck = Callable[[Dataset], tuple[list[DatasetError], list[DatasetError]]]
"""How `validate_dataset` checks each item's reference answers: (errors, warnings). The stance
check lives with the judges (`vlmalign.dataset_checks`): data/ does not import them."""
