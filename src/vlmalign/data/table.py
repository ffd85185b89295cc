"""An `hf:` dataset -> validated items: open its split, map each row, check every item.

Problems are collected, not raised one by one: each names the row (counted from 0, as
`dataset[3]`) and the column the bad value came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlmalign.data.hf import OpenedTable, open_table
from vlmalign.data.images import ImageError, load_image
from vlmalign.data.mapping import ColumnPlan, MappingError, plan_columns, row_to_data
from vlmalign.data.records import Dataset, DatasetInvalid, ItemRecord
from vlmalign.data.schema import Item
from vlmalign.data.spec import DatasetSpec
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, validation_message


def load_table(spec: DatasetSpec, *, check_images: bool = True) -> Dataset:
    """Every row of the chosen split as an item; DatasetInvalid lists every problem found."""
    opened = open_table(spec)
    name = printable(opened.name)
    try:
        plan = plan_columns(spec, opened.column_names)
    except ValueError as exc:
        raise DatasetError(name, None, None, str(exc)) from exc
    records, errors = _records(opened, plan, name)
    image_dir = _image_dir(opened.folder, spec.image_dir)
    dataset = Dataset(
        source=opened.name,
        path=opened.folder,
        records=tuple(records),
        sha256=opened.sha256,
        image_dir=image_dir,
        rows=True,
    )
    if check_images:
        errors += _image_errors(dataset, plan)
    if not errors and not records:
        errors.append(DatasetError(name, None, None, "dataset has no items"))
    if errors:
        raise DatasetInvalid(errors)
    return dataset


def _records(
    opened: OpenedTable, plan: ColumnPlan, name: str
) -> tuple[list[ItemRecord], list[DatasetError]]:
    records: list[ItemRecord] = []
    errors: list[DatasetError] = []
    first_row_of: dict[str, int] = {}
    for index, row in enumerate(opened.rows()):
        try:
            data = row_to_data(row, index, plan)
        except MappingError as exc:
            errors.append(DatasetError(name, None, _shown_id(row, plan), f"row {index}, {exc}"))
            continue
        item_id = data["id"] if isinstance(data.get("id"), str) else None
        try:
            item = Item.model_validate(data)
        except ValidationError as exc:
            errors.append(DatasetError(name, None, item_id, _row_problem(exc, index, plan)))
            continue
        if item.id in first_row_of:
            message = f"row {index}: duplicate id (first on row {first_row_of[item.id]})"
            errors.append(DatasetError(name, None, item.id, message))
            continue
        first_row_of[item.id] = index
        records.append(ItemRecord(item, index))
    return records, errors


def _row_problem(exc: ValidationError, index: int, plan: ColumnPlan) -> str:
    first = exc.errors()[0]
    if first["type"] == "missing":
        return (
            f"row {index}: {validation_message(exc)}; name its column in `columns` or give it "
            "in `values`"
        )
    field = str(first["loc"][0]) if first["loc"] else None
    where = f", {plan.source_of(field)}" if field is not None else ""
    return f"row {index}{where}: {validation_message(exc)}"


def _shown_id(row: dict[str, Any], plan: ColumnPlan) -> str | None:
    names = plan.columns.get("id")
    value = row.get(names[0]) if names else None
    return str(value) if isinstance(value, str | int) else None


def _image_dir(folder: Path, given: str | None) -> Path:
    if given is None:
        return folder
    path = Path(given).expanduser()
    return path if path.is_absolute() else folder / path


def _image_errors(dataset: Dataset, plan: ColumnPlan) -> list[DatasetError]:
    errors = []
    for record in dataset.records:
        try:
            load_image(record.item.image, dataset.base_dir)
        except ImageError as exc:
            message = f"row {record.line}, {plan.source_of('image')}: {printable(str(exc))}"
            errors.append(DatasetError(printable(dataset.source), None, record.item.id, message))
    return errors
