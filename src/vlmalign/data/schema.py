"""Schema of one dataset item: an image, a moral question about it, what an aligned answer is.

An item is a yes/no question (`kind: yesno`, the default: `aligned_stance` says which answer is
aligned) or a multiple-choice question (`kind: choice`: `choices` and the correct `answer`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from vlmalign.data.choices import (
    MAX_CHOICES,
    MIN_CHOICES,
    choice_index,
    format_option,
    option_letter,
)
from vlmalign.data.text import escape_char, first_unsafe

Stance = Literal["yes", "no"]
Split = Literal["train", "test"]
Polarity = Literal["affirmative", "negative"]
Kind = Literal["yesno", "choice"]
KINDS: tuple[Kind, ...] = ("yesno", "choice")
#: A correct option given as an index (0 = A) or a letter ("B"), stored as the index.
ChoiceAnswer = Annotated[int, BeforeValidator(choice_index)]


def _missing() -> PydanticCustomError:
    """The error pydantic gives for a required field, for fields required only by kind."""
    return PydanticCustomError("missing", "Field required")


def _checked_choices(value: tuple[str, ...]) -> tuple[str, ...]:
    if not MIN_CHOICES <= len(value) <= MAX_CHOICES:
        raise ValueError(f"needs {MIN_CHOICES} to {MAX_CHOICES} options, not {len(value)}")
    seen: dict[str, int] = {}
    for index, text in enumerate(value):
        if not text.strip():
            raise ValueError(f"option {option_letter(index)} is blank")
        key = " ".join(text.split()).casefold()
        if key in seen:  # a response naming this text could not say which option it means
            first = option_letter(seen[key])
            raise ValueError(f"options {first} and {option_letter(index)} have the same text")
        seen[key] = index
    return value


class Shot(BaseModel):
    """Information about the image, as a question-answer pair asked before the question.

    A multiple-choice shot has `choices`, and its `answer` is the correct option's letter (given
    as a letter or an index counted from 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    choices: tuple[str, ...] = ()
    answer: str = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _valid_choices(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _checked_choices(value) if value else value

    @field_validator("answer", mode="before")
    @classmethod
    def _letter_for_choices(cls, value: Any, info: ValidationInfo) -> Any:
        choices = info.data.get("choices")
        if not choices:
            return value
        index = choice_index(value)
        if index >= len(choices):
            raise ValueError(f"option {option_letter(index)} is not among the {len(choices)}")
        return option_letter(index)


class Item(BaseModel):
    """One line of a dataset file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    image: str = Field(
        min_length=1, description="relative/absolute path, pkg:<package>/<path>, or URL"
    )
    question: str = Field(min_length=1)
    kind: Kind = "yesno"
    choices: tuple[str, ...] = Field((), validate_default=True)
    answer: int | None = Field(
        None, validate_default=True, description="choice: the correct option's index (0 = A)"
    )
    # Required for yes/no items; a multiple-choice item's defaults to its correct option.
    ideal_answer: str = Field(None, validate_default=True, min_length=1)
    aligned_stance: Stance | None = Field(None, validate_default=True)
    shots: tuple[Shot, ...] = ()
    split: Split | None = None
    polarity: Polarity | None = None
    tags: tuple[str, ...] = ()
    # A multiple-choice item's defaults to its first wrong option.
    misaligned_answer: str | None = Field(None, validate_default=True)

    @property
    def answer_letter(self) -> str | None:
        """The correct option's letter (multiple-choice items)."""
        return None if self.answer is None else option_letter(self.answer)

    @property
    def options(self) -> tuple[str, ...]:
        """The options as prompts list them: `A. text`, `B. text`, ..."""
        return tuple(format_option(i, text) for i, text in enumerate(self.choices))

    @field_validator("choices")
    @classmethod
    def _choices_for_kind(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        kind = info.data.get("kind")
        if kind == "yesno" and value:
            raise ValueError('only multiple-choice items have choices; add "kind": "choice"')
        if kind == "choice":
            return _checked_choices(value)
        return value

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_for_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if value is None:
            if kind == "choice":
                raise _missing()
            return None
        if kind == "yesno":
            raise ValueError(
                'only multiple-choice items have an answer; a yes/no item has "aligned_stance"'
            )
        index = choice_index(value)
        choices = info.data.get("choices")
        if choices and index >= len(choices):
            raise ValueError(f"option {option_letter(index)} is not among the {len(choices)}")
        return index

    @field_validator("ideal_answer", mode="before")
    @classmethod
    def _default_ideal_answer(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        correct = _correct_option(info)
        if correct is None:
            raise _missing()
        return format_option(correct, info.data["choices"][correct])

    @field_validator("aligned_stance", mode="before")
    @classmethod
    def _stance_for_kind(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("kind") == "yesno":
            raise _missing()
        return value

    @field_validator("misaligned_answer", mode="before")
    @classmethod
    def _default_misaligned_answer(cls, value: Any, info: ValidationInfo) -> Any:
        correct = _correct_option(info)
        if value is not None or correct is None:
            return value
        wrong = 1 if correct == 0 else 0  # the first wrong option
        return format_option(wrong, info.data["choices"][wrong])

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


def _correct_option(info: ValidationInfo) -> int | None:
    """The correct option's index of a valid multiple-choice item being validated, else None."""
    if info.data.get("kind") != "choice" or "choices" not in info.data:
        return None
    answer = info.data.get("answer")
    return answer if isinstance(answer, int) else None
