"""What vlmalign asks of a model, as small protocols by role (no torch imported here).

A new backend subclasses `Model` and writes one method, `generate`; the rest has defaults.
What else a model can do is declared in its `ModelSpec` (`capabilities`, models/spec.py) and
filled by implementing the protocol of that role:

- `Generator`: answers prompts about images (every backend, scripted `mock:` models too).
- `Scorer`: the log-likelihood of a continuation (what the `vlm` judge uses).
- `Trainable`: finetuning: a training loss, the adapter/LoRA weights, the nn.Module surface.
- `ServesAdapters`: generates with a finetuned adapter folder as it lies on disk, without
  training (vLLM's LoRA).
- `StreamsGenerations`: a Generator that hands back each response as it arrives, with what the
  endpoint said about it (`Generated`), so a study writes it at once (`openai:` models).

Each shares `PromptedModel`: identity (name, fingerprint, adapter hash) and prompt rendering. A
backend implements the roles it fills and nothing that would only raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from vlmalign.prompts import Prompt, PromptFormat, ShotsAs, plain_rendering
from vlmalign.sampling import SamplingParams

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from vlmalign.data.schema import Item
    from vlmalign.models.adapters import AdapterLayout

LossOn = Literal["answer", "caption"]


class ModelIdentity:
    """What every backend answers the same way: its weights' fingerprint, its adapter's hash.

    Backends set `_fingerprint` once and `_adapter_hash` whenever an adapter is (un)loaded.
    """

    _fingerprint: str
    _adapter_hash: str | None = None

    def fingerprint(self) -> str:
        return self._fingerprint

    def adapter_hash(self) -> str | None:
        return self._adapter_hash


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to answer: the image, the rendered prompt (with the image token), a seed.

    `image_key` names the image's content (the study gives its file's sha256): a backend may
    keep the image's encoder output under it. `item` and `shots` say which dataset item is
    asked under how many shots; the study fills them in for scripted models, which answer by
    item, and every other backend ignores them.
    """

    image: Image.Image
    prompt_text: str
    seed: int
    item: Item | None = None
    shots: int | None = None
    image_key: str | None = None
    # The prompt as turns, for backends that send messages rather than rendered text (`openai:`);
    # `prompt_text` is its rendering and what keys the response.
    prompt: Prompt | None = None
    prompt_format: PromptFormat | None = None
    shots_as: ShotsAs | None = None
    image_file: bytes | None = None  # the image file as read: a remote model may send it as is


@dataclass(frozen=True)
class Generated:
    """One response with what its backend reports about it (None where it reports nothing).

    `finish_reason` is the endpoint's ("stop", "length", "content_filter"); `prompt_tokens` and
    `completion_tokens` are the request's usage, recorded on its first response only (the
    others of an `n`-sample request carry 0), so sums over responses are the tokens paid for;
    `served_by` is the model name the endpoint answered with and `system_fingerprint` its
    backend configuration; `refused` marks a refusal by the endpoint's content filter.
    """

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    served_by: str | None = None
    system_fingerprint: str | None = None
    refused: bool = False


@dataclass(frozen=True)
class ScoringRequest:
    """Score log P(continuation | image, prompt_text)."""

    image: Image.Image
    prompt_text: str
    continuation: str


class Model(ModelIdentity, ABC):
    """The base of a backend: set `name` (and, if the name does not identify what answers,
    `_fingerprint`), write `generate`. Prompts are rendered as plain text (MAGMA's, or `role:
    text` lines) unless a subclass renders them its own way.

    The fingerprint keys every stored response: change it (e.g. `name@2`) when the same
    request would be answered differently.
    """

    name: str
    default_prompt_format: PromptFormat = "chat"

    def fingerprint(self) -> str:
        return getattr(self, "_fingerprint", None) or self.name

    def render_prompt(
        self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
    ) -> str:
        return plain_rendering(prompt, prompt_format, shots_as)

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return answer if prompt_format == "chat" else " " + answer

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        """One response per request, in order; `request.seed` is that response's seed."""


@runtime_checkable
class PromptedModel(Protocol):
    """A model's identity and how it renders prompts: what every role starts from."""

    name: str
    default_prompt_format: PromptFormat

    def fingerprint(self) -> str:
        """Identifies the base weights (hash or id + revision) and architecture; part of every
        key. It does not change when an adapter is loaded."""
        ...

    def adapter_hash(self) -> str | None:
        """Hash of a loaded finetuned adapter, or None for the base model."""
        ...

    def render_prompt(
        self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
    ) -> str:
        """The exact text the model sees, with the image's position marked by IMAGE_TOKEN.

        `shots_as` places few-shot examples in the chat format (None = the model's default).
        """
        ...

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        """How a target answer continues a rendered prompt."""
        ...


@runtime_checkable
class Generator(PromptedModel, Protocol):
    """Answers prompts: what a study's generation stage and `vlmalign ask` need."""

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        """One decoded response per request (batched; each row uses its own seed)."""
        ...


@runtime_checkable
class StreamsGenerations(Generator, Protocol):
    """A Generator whose responses arrive one by one, out of order (concurrent requests)."""

    def generate_each(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[list[tuple[int, Generated]]]:
        """(index into `requests`, its response) pairs as they arrive, in groups that arrived
        together (one write each); closing the iterator early cancels what is in flight."""
        ...


@runtime_checkable
class Scorer(PromptedModel, Protocol):
    """Scores continuations: what the `vlm` judge needs."""

    def log_likelihood(self, requests: Sequence[ScoringRequest]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens."""
        ...


@runtime_checkable
class Trainable(PromptedModel, Protocol):
    """Can be finetuned: a loss, the weights finetuning updates, and how they are saved.

    Implementations are torch modules; the module methods at the end are the ones finetuning
    relies on.
    """

    encoder_trainable: bool  # False where the image encoder cannot be finetuned

    @property
    def device(self) -> torch.device: ...

    def training_loss(
        self,
        images: Sequence[Any],
        prompt_texts: Sequence[str],
        answers: Sequence[str],
        loss_on: LossOn = "answer",
    ) -> torch.Tensor:
        """Mean next-token loss on the answers (+ end of sequence), or on prompt text + answer."""
        ...

    def trainable_parameters(self, include_encoder: bool = False) -> Iterator[nn.Parameter]:
        """The parameters finetuning updates (everything else stays frozen)."""
        ...

    def trainable_groups(self, include_encoder: bool = False) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters by learning-rate group: `adapters` (lr), `prefix`
        (prefix_lr, may be absent) and, when asked, `encoder` (encoder_lr)."""
        ...

    def set_trainable(self, include_encoder: bool = False) -> None:
        """Freeze everything but the trainable parameters."""
        ...

    def adapter_settings(self) -> dict[str, Any]:
        """How the trainable weights are shaped (e.g. LoRA rank); written on the adapter card."""
        ...

    def configure_adapter(self, settings: Mapping[str, Any]) -> None:
        """Reshape the trainable weights to `settings` (a card's adapter_settings, or the
        finetuning config's); keys a model does not use are ignored."""
        ...

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The finetuned weights only, by stable names (what an adapter file holds)."""
        ...

    def load_trainable_state_dict(
        self, state: dict[str, torch.Tensor], adapter_hash: str | None
    ) -> None:
        """Load finetuned weights; raises ValueError for names or shapes this model lacks."""
        ...

    def adapter_layout(self) -> AdapterLayout:
        """How an adapter folder holds this model's finetuned weights (file name, format)."""
        ...

    # --- torch.nn.Module surface used by finetuning ----------------------------------------
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class ServesAdapters(Protocol):
    """Generates with a finetuned adapter folder as it lies on disk, without loading its weights
    into this process (vLLM reads peft's files itself)."""

    name: str

    def fingerprint(self) -> str: ...

    def serve_adapter(
        self, directory: Path, settings: Mapping[str, Any], adapter_hash: str
    ) -> None:
        """Generate with the adapter in `directory` from now on (its card already checked)."""
        ...
