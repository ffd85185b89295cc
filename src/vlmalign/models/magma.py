"""The MAGMA architecture (Eichenberg et al., 2021) around any Hugging Face causal LM.

image encoder -> prefix tokens (Linear projection + dropout + LayerNorm) -> causal LM whose
every MLP block is followed by a bottleneck adapter. Module names follow MAGMA's checkpoint
layout (`image_prefix.enc/proj/ln`, `mlp.0` = original MLP, `mlp.1.adapter.*`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from vlmalign.models.base import GenerationRequest, ScoringRequest
from vlmalign.prompts import IMAGE_TOKEN, Prompt, PromptFormat
from vlmalign.sampling import SamplingParams, decode


class Adapter(nn.Module):
    """Bottleneck adapter: x + Linear(d/f -> d)(ReLU(Linear(d -> d/f)(x))), near-zero at init."""

    def __init__(self, dim: int, downsample_factor: int = 4, init_std: float = 1e-3) -> None:
        super().__init__()
        hidden = dim // downsample_factor
        self.adapter = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        for module in self.adapter:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=init_std)
                nn.init.zeros_(module.bias)

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
    """Encoder features -> LM-width prefix embeddings."""

    def __init__(
        self, encoder: nn.Module, feature_dim: int, lm_dim: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.enc = encoder
        self.proj = nn.Linear(feature_dim, lm_dim)
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(lm_dim)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, mask = self.enc(pixels)
        return self.ln(self.dropout(self.proj(features))), mask


class MagmaModel(nn.Module):
    """A MAGMA-style VLM implementing the VisionLanguageModel protocol."""

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
        self.eos_token_ids = _eos_ids(lm, tokenizer)
        self.requires_grad_(False)
        for param in self.trainable_parameters():
            param.requires_grad_(True)
        self.eval()

    # --- identity -----------------------------------------------------------------------
    def fingerprint(self) -> str:
        return self._fingerprint

    def adapter_hash(self) -> str | None:
        return self._adapter_hash

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    # --- prompts ------------------------------------------------------------------------
    def render_prompt(self, prompt: Prompt, prompt_format: PromptFormat) -> str:
        if prompt_format == "magma":
            return prompt.magma_text()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError(f"model {self.name!r} has no chat template; use prompt format 'magma'")
        text = self.tokenizer.apply_chat_template(
            prompt.chat_messages(), add_generation_prompt=True, tokenize=False
        )
        return str(text)

    # --- embedding ----------------------------------------------------------------------
    def _token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _rows(self, images: Sequence[Any], texts: Sequence[str]) -> list[torch.Tensor]:
        """Per-row embeddings of image prefix + text, in prompt order."""
        pixels = self.image_prefix.enc.preprocess(images).to(self.device)  # type: ignore[operator]
        prefix, prefix_mask = self.image_prefix(pixels)
        embed = self.lm.get_input_embeddings()
        rows = []
        for row, text in enumerate(texts):
            before, marker, after = text.partition(IMAGE_TOKEN)
            if not marker:
                raise ValueError("prompt text has no image token")
            parts = [
                embed(torch.tensor(self._token_ids(before), dtype=torch.long, device=self.device))
            ]
            parts.append(prefix[row][prefix_mask[row].bool()])
            parts.append(
                embed(torch.tensor(self._token_ids(after), dtype=torch.long, device=self.device))
            )
            rows.append(torch.cat(parts))
        return rows

    @staticmethod
    def _left_pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(r.shape[0] for r in rows)
        dim = rows[0].shape[1]
        embeds = rows[0].new_zeros((len(rows), length, dim))
        mask = torch.zeros((len(rows), length), dtype=torch.long, device=rows[0].device)
        for i, row in enumerate(rows):
            embeds[i, length - row.shape[0] :] = row
            mask[i, length - row.shape[0] :] = 1
        return embeds, mask

    # --- inference ----------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        if not requests:
            return []
        rows = self._rows([r.image for r in requests], [r.prompt_text for r in requests])
        embeds, mask = self._left_pad(rows)
        seeds = [r.seed for r in requests]
        tokens = decode(self.lm, embeds, mask, params, seeds, self.eos_token_ids)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    @torch.inference_mode()
    def log_likelihood(self, requests: Sequence[ScoringRequest]) -> list[float]:
        if not requests:
            return []
        prompt_rows = self._rows([r.image for r in requests], [r.prompt_text for r in requests])
        embed = self.lm.get_input_embeddings()
        targets = [self._token_ids(r.continuation) for r in requests]
        rows = [
            torch.cat([p, embed(torch.tensor(t, dtype=torch.long, device=self.device))])
            for p, t in zip(prompt_rows, targets, strict=True)
        ]
        embeds, mask = self._left_pad(rows)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.lm(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids
        ).logits
        logprobs = logits.float().log_softmax(-1)
        scores = []
        length = embeds.shape[1]
        for i, target in enumerate(targets):
            start = length - len(target)
            positions = torch.arange(start - 1, length - 1, device=self.device)
            ids = torch.tensor(target, dtype=torch.long, device=self.device)
            scores.append(float(logprobs[i, positions, ids].sum()))
        return scores

    # --- training -----------------------------------------------------------------------
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        for adapter in self.adapters:
            yield from adapter.parameters()
        yield from self.image_prefix.proj.parameters()
        yield from self.image_prefix.ln.parameters()


def _eos_ids(lm: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    configured = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in ids:
                ids.append(token)
    if not ids:
        raise ValueError("model has no end-of-sequence token")
    return ids
