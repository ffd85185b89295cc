"""Rows of a table (a Hugging Face dataset) -> item data, as a DatasetSpec maps columns to fields.

Pure Python: the rows are plain dicts, so this module needs no `datasets`. Every problem names
the row (counted from 0, as `dataset[3]`) and the column it came from.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vlmalign.data.choices import split_options
from vlmalign.data.images import ImageError, stored_image_path
from vlmalign.data.spec import ITEM_FIELDS, TEMPLATE_FIELD, DatasetSpec


class MappingError(ValueError):
    """A row cannot become item data; the message names the row's column."""


@dataclass(frozen=True)
class ColumnPlan:
    """Where each item field comes from, checked against the table's columns once."""

    columns: dict[str, tuple[str, ...]]  # field -> column(s) read
    values: dict[str, Any]  # field -> the value of every row
    question_template: str | None
    choices_in_question: bool

    def source_of(self, field: str) -> str:
        """How an error names where a field came from: `column 'text'`, `values`, ..."""
        if field in self.columns:
            names = self.columns[field]
            if len(names) == 1:
                return f"column {names[0]!r}"
            return "columns " + ", ".join(repr(n) for n in names)
        if field in self.values:
            return "values"
        if field == "question" and self.question_template is not None:
            return "question_template"
        return f"no column {field!r}"


def plan_columns(spec: DatasetSpec, available: Sequence[str]) -> ColumnPlan:
    """Check the spec against the table's columns; a ValueError names a missing column."""
    present = set(available)
    listing = ", ".join(available) or "none"
    columns: dict[str, tuple[str, ...]] = {}
    for field in ITEM_FIELDS:
        if field in spec.values:
            continue
        given = spec.columns.get(field)
        if given is None:
            if field in present:  # a column named like the field is read as that field
                columns[field] = (field,)
            continue
        names = given if isinstance(given, tuple) else (given,)
        for name in names:
            if name not in present:
                raise ValueError(
                    f"column {name!r} (for {field}) is not in the dataset; its columns: {listing}"
                )
        columns[field] = names
    template = spec.question_template
    if template is not None:
        columns.pop("question", None)  # a column named `question` is not read then
        for name in TEMPLATE_FIELD.findall(template):
            if name not in present:
                raise ValueError(
                    f"question_template names column {name!r}, which is not in the dataset; "
                    f"its columns: {listing}"
                )
    if spec.choices_in_question and ("choices" in columns or "choices" in spec.values):
        raise ValueError("choices_in_question reads the choices; do not map a choices column too")
    return ColumnPlan(columns, dict(spec.values), template, spec.choices_in_question)


def row_to_data(row: Mapping[str, Any], index: int, plan: ColumnPlan) -> dict[str, Any]:
    """The item data of one row (unvalidated: Item checks it). Absent (None) values are left
    out, so that a field's default applies or Item says it is missing."""
    data: dict[str, Any] = {"id": str(index)}  # rows without an id column are named by index
    data.update(plan.values)
    for field, names in plan.columns.items():
        if field == "tags":
            data["tags"] = [*data.get("tags", ()), *_tags(row, names)]
            continue
        value = row[names[0]]
        if value is None:
            continue
        try:
            data[field] = _converted(field, value)
        except (ValueError, OSError, ImageError) as exc:
            raise MappingError(f"{plan.source_of(field)}: {exc}") from exc
    if plan.question_template is not None:
        data["question"] = _filled(plan.question_template, row)
    if plan.choices_in_question and isinstance(data.get("question"), str):
        found = split_options(data["question"])
        if found is None:
            where = plan.source_of("question")
            raise MappingError(f"{where}: no options '(A) ...', '(B) ...' in the question")
        data["question"], data["choices"] = found
    return data


def _converted(field: str, value: Any) -> Any:
    if field == "image":
        return image_reference(value)
    if field == "id" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # benchmarks number their rows
    return value


def _tags(row: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    tags: list[str] = []
    for name in names:
        value = row[name]
        if value is None:
            continue
        tags += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    return [tag for tag in tags if tag]


def _filled(template: str, row: Mapping[str, Any]) -> str:
    def cell(match: Any) -> str:
        value = row[match.group(1)]
        return "" if value is None else str(value)

    return TEMPLATE_FIELD.sub(cell, template)


def image_reference(value: Any) -> str:
    """An image cell -> an image reference: a path or URL as it is; image bytes, a Hugging Face
    image (`{"bytes": ..., "path": ...}`) or a PIL image kept in the cache by content hash."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return str(stored_image_path(value))
    if isinstance(value, dict):
        if value.get("bytes"):
            return str(stored_image_path(bytes(value["bytes"])))
        if isinstance(value.get("path"), str) and value["path"]:
            return str(value["path"])
        raise ValueError("the image has neither bytes nor a path")
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format=value.format or "PNG")
        return str(stored_image_path(buffer.getvalue()))
    raise ValueError(
        f"an image is a path, a URL, image bytes or an image, not {type(value).__name__}"
    )
