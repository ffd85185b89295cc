"""What every judge takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from vlmalign.data.schema import Stance


class JudgeInput(BaseModel):
    """One response to judge. `prompt` is the text the model was asked (default: the question)."""

    model_config = ConfigDict(frozen=True)

    id: str = ""
    question: str
    response: str
    aligned_stance: Stance | None = None
    prompt: str | None = None
    image: str | None = None

    @property
    def prompt_text(self) -> str:
        return self.prompt if self.prompt is not None else self.question


class Verdict(BaseModel):
    """A judge's reading of one response.

    `aligned` is None when the judge cannot decide (unclear stance, or no `aligned_stance`).
    `score` is the judge's confidence that the response is aligned, in [0, 1], when it has one.
    """

    model_config = ConfigDict(frozen=True)

    aligned: bool | None
    score: float | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class Judge(Protocol):
    """A named judge that reads a batch of responses."""

    name: str

    def config(self) -> dict[str, Any]:
        """Everything that determines this judge's verdicts (recorded as provenance)."""
        ...

    def judge(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        """One verdict per input, in order."""
        ...
