"""Scripted models (`mock:NAME`): answers fixed in advance, for tests, demos and dry runs.

- `mock:ideal` answers each item's `ideal_answer`, `mock:misaligned` its `misaligned_answer`;
- `mock:yes` always answers "Yes.", `mock:no` always "No.";
- `mock:PATH` answers from a JSONL file of scripted answers, one object per line:

      {"item": "kick-dog", "response": "No, never."}
      {"item": "kick-dog", "shots": 2, "response": "No."}
      {"item": "kick-dog", "split": "test", "response": "I would not."}

  `shots` and `split` are optional and make a row answer only that condition (items without a
  split count as `test`, as in datasets). The most specific matching row answers; an item with no
  matching row is an error that names it.

A scripted model has no weights: it only generates (it does not train or score), it imports no
torch, and it answers by item, which the study passes in every GenerationRequest. Its
fingerprint is its name (`mock:ideal`), or for a file the file's sha256, so editing the file
makes new responses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmalign.data.jsonl import decode_text, jsonl_objects, split_lines
from vlmalign.data.schema import Item, Split
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError, ModelError, validation_message
from vlmalign.models.base import GenerationRequest, Model
from vlmalign.prompts import PromptFormat
from vlmalign.sampling import SamplingParams

Answer = Callable[[GenerationRequest], str]
ITEM_ANSWERS = ("ideal", "misaligned")
FIXED_ANSWERS = {"yes": "Yes.", "no": "No."}
BUILTIN = (*ITEM_ANSWERS, *FIXED_ANSWERS)


class ScriptedRow(BaseModel):
    """One line of a scripted-answers file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item: str = Field(min_length=1)
    response: str
    shots: int | None = Field(None, ge=0)
    split: Split | None = None


@dataclass(frozen=True)
class ScriptedAnswers:
    """A file's rows by item, each item's rows most specific first."""

    source: str
    rows: dict[str, list[ScriptedRow]]

    @classmethod
    def read(cls, path: Path) -> tuple[ScriptedAnswers, str]:
        """The answers in `path` and the file's sha256; one-line errors naming file:line."""
        name = printable(str(path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{name}: cannot read scripted answers: {exc.strerror}") from exc
        rows: dict[str, list[ScriptedRow]] = {}
        seen: dict[tuple[str, str | None, int | None], int] = {}
        for line, obj in jsonl_objects(name, split_lines(decode_text(name, data, "file"))):
            if isinstance(obj, DatasetError):
                raise obj
            try:
                row = ScriptedRow.model_validate(obj)
            except ValidationError as exc:
                raise ModelError(validation_message(exc, f"{name}:{line}")) from exc
            key = (row.item, row.split, row.shots)
            if key in seen:
                raise ModelError(
                    f"{name}:{line}: item {row.item!r} already has this answer at line "
                    f"{seen[key]}; keep one"
                )
            seen[key] = line
            rows.setdefault(row.item, []).append(row)
        for item_rows in rows.values():
            item_rows.sort(key=lambda r: (r.shots is None, r.split is None))
        return cls(name, rows), hashlib.sha256(data).hexdigest()

    def __call__(self, request: GenerationRequest) -> str:
        item = _item_of(request, self.source)
        split = item.split or "test"
        for row in self.rows.get(item.id, []):
            if row.shots in (None, request.shots) and row.split in (None, split):
                return row.response
        shots = "" if request.shots is None else f" at {request.shots} shots"
        raise ModelError(
            f"{self.source}: no scripted answer for item {item.id!r}{shots} (split {split}); "
            f'add a line {{"item": "{item.id}", "response": "..."}}'
        )


def _item_of(request: GenerationRequest, source: str) -> Item:
    if request.item is None:
        raise ModelError(f"{source} answers dataset items; ask it in a study (`vlmalign study`)")
    return request.item


def _reference_answer(which: str) -> Answer:
    def answer(request: GenerationRequest) -> str:
        item = _item_of(request, f"mock:{which}")
        text = item.ideal_answer if which == "ideal" else item.misaligned_answer
        if text is None:
            raise ModelError(
                f"mock:{which}: item {item.id!r} has no {which}_answer; add one to the dataset"
            )
        return text

    return answer


class ScriptedModel(Model):
    """A model whose every answer is decided by `answer` (no weights, no torch)."""

    default_prompt_format: PromptFormat = "magma"

    def __init__(self, name: str, fingerprint: str, answer: Answer) -> None:
        self.name = name
        self._fingerprint = fingerprint
        self._answer = answer

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return " " + answer

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        return [self._answer(request) for request in requests]


def load_mock(argument: str) -> ScriptedModel:
    """`mock:ideal`, `mock:misaligned`, `mock:yes`, `mock:no`, or `mock:PATH` (scripted answers)."""
    name = f"mock:{argument}"
    if argument in ITEM_ANSWERS:
        return ScriptedModel(name, name, _reference_answer(argument))
    if argument in FIXED_ANSWERS:
        text = FIXED_ANSWERS[argument]
        return ScriptedModel(name, name, lambda request: text)
    path = Path(argument).expanduser()
    if not path.is_file():
        raise ModelError(
            f"{printable(name)}: not one of {', '.join(BUILTIN)}, and no such file of scripted "
            "answers"
        )
    answers, sha256 = ScriptedAnswers.read(path)
    return ScriptedModel(name, sha256, answers)
