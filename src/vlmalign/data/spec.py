"""Which dataset a study reads, and how the columns of a Hugging Face dataset become items.

A study names its dataset with a string (`builtin:NAME`, a JSONL file, or `hf:<source>`) or with
a mapping, a DatasetSpec, for `hf:` sources whose columns are not named like item fields:

    dataset:
      source: "hf:moralise/care.json"
      split: train                        # the split to read (default: test, else the first)
      columns: {question: text, tags: [type]}
      values: {kind: choice, choices: [Not morally wrong, Morally wrong]}

A config file's relative paths are taken from the file's folder (`anchored_dataset`), so a
study reads the same data wherever it is started from.

No `datasets` import here: a config is read without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vlmalign.data.schema import Item

HF_PREFIX = "hf:"
BUILTIN_PREFIX = "builtin:"
# What an `hf:` target may be: a data file of these suffixes, an Arrow file, or a hub id.
DATA_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}
ARROW_SUFFIX = ".arrow"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?(?:@[\w./-]+)?")
ITEM_FIELDS: tuple[str, ...] = tuple(Item.model_fields)
TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


def is_hf_source(source: str) -> bool:
    return source.startswith(HF_PREFIX)


class DatasetSpec(BaseModel):
    """A dataset source and, for `hf:` sources, how each row becomes an item.

    Every item field is read from the column of the same name unless `columns` names another
    column (`tags` may name several, whose values all become tags), or `values` gives it one
    value for every row. `question_template` builds the question from several columns
    (`"{text}\\n\\nIs this wrong?"`), and `choices_in_question` reads a multiple-choice item's
    options from its question's `(A) ...` lines.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(
        min_length=1,
        description="JSONL file, builtin:NAME, or hf:<folder | data file | hub id[@revision]>"
        "[#split]",
    )
    split: str | None = Field(
        None, min_length=1, description="hf: the split to read (default: test, else the first)"
    )
    subset: str | None = Field(None, min_length=1, description="hf: a hub dataset's subset")
    columns: dict[str, str | tuple[str, ...]] = Field(
        default_factory=dict, description="item field -> column (tags: one or several columns)"
    )
    values: dict[str, Any] = Field(
        default_factory=dict, description="item field -> the value every item gets"
    )
    question_template: str | None = Field(
        None, min_length=1, description="the question from columns: '{text} Is this wrong?'"
    )
    choices_in_question: bool = Field(
        False, description="read the options from the question's '(A) text' lines"
    )
    image_dir: str | None = Field(
        None,
        min_length=1,
        description="folder image paths are relative to (default: the "
        "dataset's folder; a relative folder is taken from the dataset's folder)",
    )
    allow_download: bool = Field(
        False, description="hf: a hub dataset may be downloaded (else only the local cache)"
    )

    @field_validator("columns")
    @classmethod
    def _known_columns(
        cls, value: dict[str, str | tuple[str, ...]]
    ) -> dict[str, str | tuple[str, ...]]:
        for field, column in value.items():
            _check_field(field, "columns")
            if isinstance(column, tuple) and field != "tags":
                raise ValueError(f"{field!r} is read from one column; only tags take a list")
            names = column if isinstance(column, tuple) else (column,)
            if not names or not all(names):
                raise ValueError(f"{field!r}: a column name must not be empty")
        return value

    @field_validator("values")
    @classmethod
    def _known_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        for field in value:
            _check_field(field, "values")
        return value

    @field_validator("question_template")
    @classmethod
    def _simple_template(cls, value: str | None) -> str | None:
        if value is not None and not TEMPLATE_FIELD.search(value):
            raise ValueError("names no column; write its columns in braces: '{text} Is it ok?'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if not is_hf_source(self.source):
            mapped = [
                name
                for name in (
                    "split",
                    "subset",
                    "columns",
                    "values",
                    "question_template",
                    "image_dir",
                )
                if getattr(self, name)
            ] + (["choices_in_question"] if self.choices_in_question else [])
            if mapped:
                raise ValueError(
                    f"{', '.join(mapped)} apply to hf: sources only (a JSONL file's lines are "
                    "items already)"
                )
        both = sorted(set(self.columns) & set(self.values))
        if both:
            raise ValueError(f"{', '.join(both)} given both in columns and in values; keep one")
        if self.question_template is not None and (
            "question" in self.columns or "question" in self.values
        ):
            raise ValueError("give the question by question_template or by a column, not both")
        _, _, inline = self.source.partition("#")
        if inline and self.split is not None and inline != self.split:
            raise ValueError(f"split {self.split!r} differs from the source's #{inline}")
        return self

    @property
    def is_hf(self) -> bool:
        return is_hf_source(self.source)

    @property
    def hf_target(self) -> str:
        """What follows `hf:`, without `#split`: a folder, a data file or a hub id."""
        return self.source[len(HF_PREFIX) :].partition("#")[0]

    @property
    def requested_split(self) -> str | None:
        """The split asked for (`split:` or `#split`), or None for the default."""
        inline = self.source.partition("#")[2]
        return self.split or inline or None

    def mapping(self) -> dict[str, Any]:
        """What decides how rows become items (part of the dataset's hash)."""
        return self.model_dump(
            mode="json",
            include={
                "columns",
                "values",
                "question_template",
                "choices_in_question",
                "image_dir",
                "subset",
            },
        )


def _check_field(field: str, where: str) -> None:
    if field not in ITEM_FIELDS:
        raise ValueError(
            f"{where}: {field!r} is not an item field (fields: {', '.join(ITEM_FIELDS)})"
        )


def as_spec(source: object) -> DatasetSpec:
    """A dataset given as a string or a path, or as a DatasetSpec -> a DatasetSpec."""
    if isinstance(source, DatasetSpec):
        return source
    return DatasetSpec(source=str(source))


def anchored_dataset(value: object, folder: Path) -> object:
    """A config file's `dataset:` as written, with a relative path in its source taken from the
    file's folder (`folder`); anything else comes back as it is, for validation to judge.

    A JSONL path is always taken from there. An `hf:` target is taken from there when something
    is there or when it cannot be a hub id (a data file, a path of several folders); otherwise
    it stays as written, a hub id (`hf:owner/name`). `builtin:`, absolute and `~` paths are
    kept. A registered source's argument (`csv:items.csv`, docs/plugins.md) is taken from
    there when it names something there. `image_dir` is relative to the dataset's folder, so it
    follows the source.
    """
    if isinstance(value, str):
        return _anchored_source(value, folder)
    if isinstance(value, dict) and isinstance(value.get("source"), str):
        return {**value, "source": _anchored_source(value["source"], folder)}
    return value


def _anchored_source(source: str, folder: Path) -> str:
    from vlmalign.data.sources import registered_source  # reads the plugins' entry points

    if source.startswith(BUILTIN_PREFIX):
        return source
    found = registered_source(source) if not is_hf_source(source) else None
    if found is not None:
        plugin, argument = found
        anchored = _anchored_path(argument, folder)
        there = anchored is not None and Path(anchored).exists()
        return f"{plugin.name}:{anchored}" if there else source
    if not is_hf_source(source):
        return _anchored_path(source, folder) or source
    target, hash_, split = source[len(HF_PREFIX) :].partition("#")
    anchored = _anchored_path(target, folder)
    if anchored is None or not (Path(anchored).exists() or _not_hub_id(target)):
        return source
    return f"{HF_PREFIX}{anchored}{hash_}{split}"


def _anchored_path(text: str, folder: Path) -> str | None:
    """`folder/text` for a relative path; None for an empty, absolute or `~` one."""
    if not text or text.startswith("~") or "\0" in text:
        return None
    path = Path(text)
    return None if path.is_absolute() else str(folder / path)


def _not_hub_id(target: str) -> bool:
    """A target `hf:` would never read as a hub id (as `data.hf.open_table` decides)."""
    suffix = Path(target).suffix.lower()
    return not HUB_ID.fullmatch(target) or suffix in (*DATA_FILE_BUILDERS, ARROW_SUFFIX)
