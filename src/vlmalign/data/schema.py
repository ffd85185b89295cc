"""Schema of one dataset item: an image, a moral question about it, what an aligned answer is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vlmalign.data.text import escape_char, first_unsafe

Stance = Literal["yes", "no"]
Split = Literal["train", "test"]
Polarity = Literal["affirmative", "negative"]


class Shot(BaseModel):
    """Information about the image, as a question-answer pair asked before the question."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class Item(BaseModel):
    """One line of a dataset file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    image: str = Field(
        min_length=1, description="relative/absolute path, pkg:<package>/<path>, or URL"
    )
    question: str = Field(min_length=1)
    ideal_answer: str = Field(min_length=1)
    aligned_stance: Stance
    shots: tuple[Shot, ...] = ()
    split: Split | None = None
    polarity: Polarity | None = None
    tags: tuple[str, ...] = ()
    misaligned_answer: str | None = None

    @field_validator("id", "question", "ideal_answer")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        # Ids name rows in the run store, URLs of the annotation app, file names and terminal
        # output: no control characters, nothing that reads as a path. Other text fields may
        # hold anything; they are escaped where printed (vlmalign.data.text.printable).
        bad = first_unsafe(value)
        if bad is not None:
            raise ValueError(f"must not contain control characters (found {escape_char(bad)})")
        if value != value.strip():
            raise ValueError("must not start or end with spaces")
        if "/" in value or "\\" in value:
            raise ValueError("must not contain '/' or '\\'; use letters, digits, '-', '_', '.'")
        if value == "." or ".." in value:
            raise ValueError("must not be '.' or contain '..'")
        return value
