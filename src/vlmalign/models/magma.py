"""The MAGMA architecture (Eichenberg et al., 2021) around any Hugging Face causal LM.

image encoder -> prefix tokens (Linear projection + dropout + LayerNorm) -> causal LM whose
every MLP block is followed by a bottleneck adapter. Module names follow MAGMA's checkpoint
layout (`image_prefix.enc/proj/ln`, `mlp.0` = original MLP, `mlp.1.adapter.*`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlmalign.models.adapters import AdapterLayout
from vlmalign.models.base import GenerationRequest, LossOn, ModelIdentity, ScoringRequest
from vlmalign.models.decoding import (
    Prefill,
    decode,
    distinct_prompts,
    length_groups,
    prefill,
    stack_prefills,
)
from vlmalign.models.image_features import EncodedImages
from vlmalign.models.losses import mean_per_example
from vlmalign.models.tokens import IGNORE, eos_token_ids
from vlmalign.prompts import IMAGE_TOKEN, Prompt, PromptFormat, ShotsAs
from vlmalign.sampling import SamplingParams


class Adapter(nn.Module):
    """Bottleneck adapter: x + Linear(d/f -> d)(ReLU(Linear(d -> d/f)(x))), near zero at init.

    The up-projection starts at exactly zero, so the adapted model starts as the pretrained LM;
    the down-projection starts small but not zero, so the up-projection learns from the first
    step (with both near zero, early updates to their product are second-order and wasted).
    """

    def __init__(self, dim: int, downsample_factor: int = 4, down_init_std: float = 0.02) -> None:
        super().__init__()
        hidden = dim // downsample_factor
        self.adapter = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        down, up = self.adapter[0], self.adapter[2]
        assert isinstance(down, nn.Linear) and isinstance(up, nn.Linear)
        nn.init.normal_(down.weight, std=down_init_std)
        nn.init.zeros_(down.bias)
        nn.init.zeros_(up.weight)
        nn.init.zeros_(up.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.adapter(hidden_states)


def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a causal LM (Llama `model.layers`, GPT-J `transformer.h`, ...)."""
    for module in lm.modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module)
            and all(hasattr(b, "mlp") for b in module)
        ):
            return module
    raise ValueError(f"cannot find decoder layers with an `mlp` in {type(lm).__name__}")


def add_adapters(lm: nn.Module, hidden_size: int, downsample_factor: int = 4) -> list[Adapter]:
    """Insert an adapter after every MLP block, as `mlp = Sequential(mlp, adapter)`."""
    adapters = []
    for block in decoder_layers(lm):
        if isinstance(block.mlp, nn.Sequential) and isinstance(block.mlp[-1], Adapter):
            raise ValueError("language model already has adapters")
        adapter = Adapter(hidden_size, downsample_factor)
        block.mlp = nn.Sequential(block.mlp, adapter)  # type: ignore[arg-type]
        adapters.append(adapter)
    return adapters


class ImagePrefix(nn.Module):
    """Encoder features -> LM-width prefix embeddings.

    `encode` (the encoder, frozen unless finetuned) and `project` (the trainable projection)
    are separate steps, so that a model can keep encoder outputs and project them anew.
    """

    def __init__(
        self, encoder: nn.Module, feature_dim: int, lm_dim: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.enc = encoder
        self.proj = nn.Linear(feature_dim, lm_dim)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(lm_dim)
        # The LM's dtype where it differs from the prefix's (a half-precision LM).
        self.output_dtype: torch.dtype | None = None

    def encode(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Each image's encoder features (tokens, feature_dim), padding dropped."""
        features, mask = self.enc(pixels)
        return [row[keep.bool()] for row, keep in zip(features, mask, strict=True)]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        embeds = self.ln(self.dropout(self.proj(features)))
        return embeds if self.output_dtype is None else embeds.to(self.output_dtype)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, mask = self.enc(pixels)
        return self.project(features), mask


@dataclass(frozen=True)
class Batch:
    """One left-padded batch of sequences."""

    embeds: torch.Tensor
    mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    is_continuation: torch.Tensor

    @classmethod
    def left_padded(cls, rows: Sequence[tuple[torch.Tensor, list[int], int]]) -> Batch:
        """rows: (embeddings, labels, length of the continuation at the end)."""
        length = max(e.shape[0] for e, _, _ in rows)
        first = rows[0][0]
        embeds = first.new_zeros((len(rows), length, first.shape[1]))
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=first.device)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long, device=first.device)
        is_continuation = torch.zeros((len(rows), length), dtype=first.dtype, device=first.device)
        for i, (row, row_labels, tail) in enumerate(rows):
            start = length - row.shape[0]
            embeds[i, start:] = row
            mask[i, start:] = 1
            labels[i, start:] = torch.tensor(row_labels, dtype=torch.long)
            if tail:
                is_continuation[i, length - tail :] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return cls(embeds, mask, position_ids, labels, is_continuation)


class MagmaModel(ModelIdentity, nn.Module):
    """A MAGMA-style VLM: a Generator, Scorer and Trainable (adapters + image prefix)."""

    def __init__(
        self,
        name: str,
        lm: Any,
        tokenizer: Any,
        image_prefix: ImagePrefix,
        adapters: Sequence[Adapter],
        *,
        fingerprint: str,
        default_prompt_format: PromptFormat = "magma",
    ) -> None:
        super().__init__()
        self.name = name
        self.lm = lm
        self.tokenizer = tokenizer
        self.image_prefix = image_prefix
        # A plain list: the adapters are registered once, inside the LM (MAGMA's key layout).
        self.adapters = list(adapters)
        self._fingerprint = fingerprint
        self.default_prompt_format: PromptFormat = default_prompt_format
        self._adapter_hash: str | None = None
        self.eos_token_ids = eos_token_ids(getattr(lm, "generation_config", None), tokenizer)
        # Encoder outputs by image (valid while the encoder's weights stay as they are).
        self.images = EncodedImages()
        # Requests asking the same prompt about the same image share one prefill.
        self.share_prefill = True
        self.set_trainable()
        self.eval()

    # --- identity -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def encoder_calls(self) -> int:
        """Images the image encoder has run on since the model was built."""
        return self.images.encoder_calls

    # --- prompts ------------------------------------------------------------------------
    def render_prompt(
        self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
    ) -> str:
        if prompt_format == "magma":
            return prompt.magma_text()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError(f"model {self.name!r} has no chat template; use prompt format 'magma'")
        text = self.tokenizer.apply_chat_template(
            prompt.chat_messages(shots_as or "turns"), add_generation_prompt=True, tokenize=False
        )
        return str(text)

    # --- embedding ----------------------------------------------------------------------
    def _token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _encoder_trains(self) -> bool:
        encoder = self.image_prefix.enc
        return encoder.training or any(p.requires_grad for p in encoder.parameters())

    def _encode(self, images: Sequence[Any]) -> list[torch.Tensor]:
        pixels = self.image_prefix.enc.preprocess(images).to(self.device)  # type: ignore[operator]
        return self.image_prefix.encode(pixels)

    def _image_features(
        self, images: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[torch.Tensor]:
        """Each image's encoder features: from the cache while the encoder is frozen, each
        image encoded alone (its features never depend on the images beside it)."""
        if self._encoder_trains():
            self.images.clear()  # the weights are about to change
            return self.images.uncached(images, self._encode)
        given = keys if keys is not None else [None] * len(images)
        cache_keys = [self.images.key_of(im, k) for im, k in zip(images, given, strict=True)]
        features = self.images.features(
            images, cache_keys, lambda missing: [self._encode([im])[0] for im in missing]
        )
        return [f.to(self.device) for f in features]

    def _batch(
        self,
        images: Sequence[Any],
        texts: Sequence[str],
        continuations: Sequence[Sequence[int]] | None = None,
        image_keys: Sequence[str | None] | None = None,
        skip_tokens: int = 0,
    ) -> Batch:
        """Left-padded embeddings of image prefix + prompt text (+ continuation token ids),
        without each prompt's first `skip_tokens` text tokens (a common prefix run apart).

        `labels` holds the token id at every text position and IGNORE at image and padding
        positions; `is_continuation` marks the continuation's positions.
        """
        features = self._image_features(images, image_keys)
        # Projected together (one matmul), then split back per image.
        prefixes = self.image_prefix.project(torch.cat(features)).split(
            [f.shape[0] for f in features]
        )
        embed = self.lm.get_input_embeddings()
        rows: list[tuple[torch.Tensor, list[int], int]] = []
        for row, text in enumerate(texts):
            before, marker, after = text.partition(IMAGE_TOKEN)
            if not marker:
                raise ValueError("prompt text has no image token")
            image = prefixes[row]
            tail = list(continuations[row]) if continuations is not None else []
            before_ids = self._token_ids(before)[skip_tokens:]
            after_ids = self._token_ids(after) + tail
            ids = torch.tensor(before_ids + after_ids, dtype=torch.long, device=self.device)
            text_embeds = embed(ids)
            embeds = torch.cat(
                [text_embeds[: len(before_ids)], image, text_embeds[len(before_ids) :]]
            )
            labels = before_ids + [IGNORE] * image.shape[0] + after_ids
            rows.append((embeds, labels, len(tail)))
        return Batch.left_padded(rows)

    # --- inference ----------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        """Each distinct (image, prompt) is prefilled once; every request decodes its own row.

        With `share_prefill` (the default), the text all prompts start with is prefilled once
        too, and prompts are prefilled in groups of similar length (little padding).
        """
        if not requests:
            return []
        firsts, rows = distinct_prompts(
            [(r.image_key or id(r.image), r.prompt_text) for r in requests]
            if self.share_prefill
            else range(len(requests))
        )
        start, order = self._prefill_prompts([requests[i] for i in firsts])
        position = {prompt: row for row, prompt in enumerate(order)}
        tokens = decode(
            self.lm,
            start.rows([position[prompt] for prompt in rows]),
            params,
            [r.seed for r in requests],
            self.eos_token_ids,
            len(self.tokenizer),
        )
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    def _prefill_prompts(self, prompts: Sequence[GenerationRequest]) -> tuple[Prefill, list[int]]:
        """The prompts prefilled (their common start once, then in groups of similar length),
        and which prompt each row of the result is."""
        texts = [r.prompt_text for r in prompts]
        shared = self.share_prefill and len(prompts) > 1
        common = self._common_start(texts) if shared else []
        batch = self._batch(
            [r.image for r in prompts],
            texts,
            image_keys=[r.image_key for r in prompts],
            skip_tokens=len(common),
        )
        lengths = [int(n) for n in batch.mask.sum(-1)]
        groups = length_groups(lengths) if shared else [list(range(len(prompts)))]
        prefix = self._prefill_tokens(common) if common else None
        parts = []
        for group in groups:
            index = torch.tensor(group, device=self.device)
            width = max(lengths[i] for i in group)  # columns padded in every row are dropped
            parts.append(
                prefill(
                    self.lm,
                    {
                        "inputs_embeds": batch.embeds[index, -width:],
                        "attention_mask": batch.mask[index, -width:],
                    },
                    batch.position_ids[index, -width:],
                    prefix=prefix,
                )
            )
        return stack_prefills(parts), [prompt for group in groups for prompt in group]

    def _common_start(self, texts: Sequence[str]) -> list[int]:
        """The token ids every prompt's text before its image starts with (a system prompt)."""
        starts = [self._token_ids(t.partition(IMAGE_TOKEN)[0]) for t in texts]
        common = starts[0]
        for ids in starts[1:]:
            length = next(
                (i for i, (a, b) in enumerate(zip(common, ids, strict=False)) if a != b),
                min(len(common), len(ids)),
            )
            common = common[:length]
        return common

    def _prefill_tokens(self, ids: Sequence[int]) -> Prefill:
        """Text alone (one row), prefilled: what every prompt of a batch starts with."""
        tokens = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        mask = torch.ones_like(tokens)
        embeds = self.lm.get_input_embeddings()(tokens)
        positions = torch.arange(tokens.shape[1], device=self.device)[None]
        return prefill(self.lm, {"inputs_embeds": embeds, "attention_mask": mask}, positions)

    @torch.inference_mode()
    def log_likelihood(self, requests: Sequence[ScoringRequest]) -> list[float]:
        if not requests:
            return []
        targets = [self._token_ids(r.continuation) for r in requests]
        batch = self._batch([r.image for r in requests], [r.prompt_text for r in requests], targets)
        token_logprobs = self._token_logprobs(batch)
        return [float(row.sum()) for row in (token_logprobs * batch.is_continuation[:, 1:])]

    def _logits(self, batch: Batch) -> torch.Tensor:
        return self.lm(
            inputs_embeds=batch.embeds, attention_mask=batch.mask, position_ids=batch.position_ids
        ).logits

    def _token_logprobs(self, batch: Batch) -> torch.Tensor:
        """log P(token t | tokens < t) at every position after the first (0 where ignored)."""
        logprobs = self._logits(batch)[:, :-1].float().log_softmax(-1)
        targets = batch.labels[:, 1:]
        picked = logprobs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        return picked * (targets != IGNORE)

    # --- training -----------------------------------------------------------------------
    encoder_trainable = True  # False where the encoder has no differentiable path (mini)

    def trainable_parameters(self, include_encoder: bool = False) -> Iterator[nn.Parameter]:
        for adapter in self.adapters:
            yield from adapter.parameters()
        yield from self.image_prefix.proj.parameters()
        yield from self.image_prefix.ln.parameters()
        if include_encoder:
            yield from self.image_prefix.enc.parameters()

    def trainable_groups(self, include_encoder: bool = False) -> dict[str, list[nn.Parameter]]:
        prefix = [*self.image_prefix.proj.parameters(), *self.image_prefix.ln.parameters()]
        groups = {"adapters": [p for a in self.adapters for p in a.parameters()], "prefix": prefix}
        if include_encoder:
            groups["encoder"] = list(self.image_prefix.enc.parameters())
        return groups

    # The adapters' shape is fixed by the architecture: nothing to record or configure.
    def adapter_settings(self) -> dict[str, Any]:
        return {}

    def configure_adapter(self, settings: Mapping[str, Any]) -> None:
        return None

    def adapter_layout(self) -> AdapterLayout:
        return AdapterLayout()  # adapter.safetensors, by the names above

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The finetuned weights by their MAGMA-style names (everything else is frozen)."""
        wanted = {id(p) for p in self.parameters() if p.requires_grad}
        return {n: p.detach().cpu().clone() for n, p in self.named_parameters() if id(p) in wanted}

    def load_trainable_state_dict(
        self, state: dict[str, torch.Tensor], adapter_hash: str | None
    ) -> None:
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise ValueError(f"adapter has weights this model lacks: {', '.join(unknown[:5])}")
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise ValueError(f"adapter weight {name} has shape {tuple(value.shape)}")
                params[name].copy_(value)
        if any(name.startswith("image_prefix.enc.") for name in state):
            self.images.clear()  # a finetuned encoder: its outputs change
        self._adapter_hash = adapter_hash

    def set_trainable(self, include_encoder: bool = False) -> None:
        """Freeze everything but the trainable parts (and the encoder, when asked)."""
        self.requires_grad_(False)
        for param in self.trainable_parameters(include_encoder):
            param.requires_grad_(True)
        if include_encoder:
            self.images.clear()

    def train(self, mode: bool = True) -> MagmaModel:
        super().train(mode)
        # Frozen encoders keep their BatchNorm statistics: eval mode even while training.
        if not any(p.requires_grad for p in self.image_prefix.enc.parameters()):
            self.image_prefix.enc.eval()
        return self

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        """How a target answer continues a rendered prompt ("A:" is followed by a space)."""
        return answer if prompt_format == "chat" else " " + answer

    def training_loss(
        self,
        images: Sequence[Any],
        prompt_texts: Sequence[str],
        answers: Sequence[str],
        loss_on: LossOn = "answer",
    ) -> torch.Tensor:
        """Next-token loss on the answer (+ end of sequence), or on prompt text + answer: each
        example's mean, averaged over examples (`losses.mean_per_example`)."""
        eos = self.tokenizer.eos_token_id
        targets = [[*self._token_ids(answer), eos] for answer in answers]
        batch = self._batch(images, prompt_texts, targets)
        labels = batch.labels[:, 1:]
        if loss_on == "answer":
            labels = labels.masked_fill(batch.is_continuation[:, 1:] == 0, IGNORE)
        # The vocabulary projection is a fifth of the compute: apply it only where a loss is taken.
        hidden = self.lm.get_decoder()(
            inputs_embeds=batch.embeds, attention_mask=batch.mask, position_ids=batch.position_ids
        ).last_hidden_state[:, :-1]
        scored = labels != IGNORE
        logits = self.lm.get_output_embeddings()(hidden[scored])
        return mean_per_example(logits, labels[scored], scored.nonzero()[:, 0], len(answers))

    # Calling the module (as accelerate's DDP wrapper does) computes the training loss.
    forward = training_loss
