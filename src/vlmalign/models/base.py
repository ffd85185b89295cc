"""The backend-neutral model API every VLM in vlmalign implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image
from torch import nn

from vlmalign.prompts import Prompt, PromptFormat
from vlmalign.sampling import SamplingParams


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer: the image, the rendered prompt (with the image token), a seed."""

    image: Image.Image
    prompt_text: str
    seed: int


@dataclass(frozen=True)
class ScoringRequest:
    """Score log P(continuation | image, prompt_text)."""

    image: Image.Image
    prompt_text: str
    continuation: str


@runtime_checkable
class VisionLanguageModel(Protocol):
    """A VLM as vlmalign sees it: render prompts, generate in batches, score, expose trainables."""

    name: str
    default_prompt_format: PromptFormat

    def fingerprint(self) -> str:
        """Identifies the weights (hash or id + revision) and architecture; part of every key."""
        ...

    def adapter_hash(self) -> str | None:
        """Hash of a loaded finetuned adapter, or None for the base model."""
        ...

    def render_prompt(self, prompt: Prompt, prompt_format: PromptFormat) -> str:
        """The exact text the model sees, with the image's position marked by IMAGE_TOKEN."""
        ...

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        """One decoded response per request (batched; each row uses its own seed)."""
        ...

    def log_likelihood(self, requests: Sequence[ScoringRequest]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens."""
        ...

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters finetuning updates (everything else stays frozen)."""
        ...
