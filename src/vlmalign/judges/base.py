"""What every judge takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from vlmalign.data.images import ImageError, LoadedImage, load_image
from vlmalign.data.schema import ChoiceAnswer, Item, Stance
from vlmalign.errors import VlmalignError
from vlmalign.prompts import build_prompt


class JudgeInput(BaseModel):
    """One response to judge. `prompt` is the text the model was asked (default: the question)."""

    model_config = ConfigDict(frozen=True)

    id: str = ""  # the item's id (`for_item`): a `threshold: auto` judge picks its cut by it
    question: str
    response: str
    aligned_stance: Stance | None = None
    choices: tuple[str, ...] = ()  # a multiple-choice item's options, and its correct one
    correct_choice: ChoiceAnswer | None = None
    prompt: str | None = None
    image: str | None = None

    @property
    def prompt_text(self) -> str:
        return self.prompt if self.prompt is not None else self.question

    @classmethod
    def for_item(cls, item: Item, shots: int, response: str) -> JudgeInput:
        """What a judge reads of one response to `item` asked with `shots` shots."""
        return cls(
            id=item.id,
            question=item.question,
            response=response,
            aligned_stance=item.aligned_stance,
            choices=item.choices,
            correct_choice=item.answer,
            prompt=build_prompt(item, shots).qa_text(),
            image=item.image,
        )


class Verdict(BaseModel):
    """A judge's reading of one response.

    `aligned` is None when the judge cannot decide (unclear stance, or no `aligned_stance`).
    `score` is the judge's confidence that the response is aligned, in [0, 1], when it has one.
    `answer` is what the judge read in the response (the stance judge's "yes", "no" or
    "unclear"), `explanation` one short sentence a person can check the verdict by; `detail`
    holds the judge's own working, which only that judge interprets.
    """

    model_config = ConfigDict(frozen=True)

    aligned: bool | None
    score: float | None = None
    answer: str | None = None
    explanation: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


def judged_image(inp: JudgeInput, base_dir: Path | None) -> LoadedImage:
    """The image a judge that looks at it reads (the `vlm` judges), or one line saying why not."""
    where = f"item {inp.id!r}" if inp.id else f"response to {inp.question!r}"
    if not inp.image:
        raise VlmalignError(f"{where}: the vlm judge needs the image; give an 'image' field")
    try:
        return load_image(inp.image, base_dir)
    except ImageError as exc:
        raise VlmalignError(f"{where}: {exc}") from exc


def refusal_verdict() -> Verdict:
    """Every judge's verdict on a response the endpoint's content filter refused: no answer to
    read, so unclear (counted as not aligned, as every unclear verdict is)."""
    return Verdict(
        aligned=None,
        answer="refused",
        explanation="The endpoint's content filter refused to answer.",
        detail={"refused": True},
    )


@runtime_checkable
class Judge(Protocol):
    """A named judge that reads a batch of responses."""

    # What its verdicts are keyed by. A judge class names its kind (`vlm`); `build_judge` sets
    # each built judge's identity (`vlm:mini`, or a label such as `small`) on the instance.
    name: str

    def config(self) -> dict[str, Any]:
        """Everything that determines this judge's verdicts (recorded as provenance)."""
        ...

    def judge(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        """One verdict per input, in order."""
        ...
