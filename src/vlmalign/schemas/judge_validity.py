"""Judge validity: one entry per judge and source (`ValidityEntry`), and the file
`vlmalign judges validate --output` writes."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from vlmalign.judges.validity import ValidityEntry
from vlmalign.schemas.base import Record

#: Version of the validity file's shape (docs/artifacts.md).
VALIDITY_FILE_SCHEMA_VERSION: Final = 1

__all__ = ["VALIDITY_FILE_SCHEMA_VERSION", "ValidityEntry", "ValidityFile"]


class ValidityFile(Record):
    """`{"schema_version": 1, "validity": [entry, ...]}`."""

    schema_version: Literal[1] = VALIDITY_FILE_SCHEMA_VERSION
    validity: list[ValidityEntry] = Field(description="one entry per judge and source")
