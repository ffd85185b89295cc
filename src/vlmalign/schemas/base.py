"""What every saved artifact shares: no unknown keys, and a JSON Schema of what is written."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

FieldSchema = core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField


class Record(BaseModel):
    """A shape that is ours: a key it does not name is an error, on reading and on writing."""

    model_config = ConfigDict(extra="forbid")


class SettingsRecord(BaseModel):
    """Settings recorded as they were used (a config's options): the artifact's own copy of their
    fields, so renaming or adding an option leaves its files readable.

    A key it does not name (an option of a newer version) is kept, not refused, and written back
    as read; a key it names but a file lacks (an older version's) reads as its default. Its
    written schema stays closed, as every other: this version writes the keys it names (tests
    keep each record's fields those of the settings it records).
    """

    model_config = ConfigDict(
        extra="allow", frozen=True, json_schema_extra={"additionalProperties": False}
    )


class WrittenSchema(GenerateJsonSchema):
    """The JSON Schema of documents as vlmalign writes them.

    Writers dump the whole model, defaults included, so every field is present in a written
    file: in this schema each one is required, in nested models too (pydantic would otherwise
    mark a field with a default as optional). Readers are more lenient: a file from an older
    version that lacks a later field still loads, with the field's default.
    """

    def field_is_required(self, field: FieldSchema, total: bool) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def written_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `model` as it is dumped to a file."""
    return model.model_json_schema(mode="serialization", schema_generator=WrittenSchema)
