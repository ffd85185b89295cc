"""Decoding for the transformers backends: per-row seeded sampling and the KV-cached loop.

Each row of a batch draws from its own torch.Generator seeded with its request's seed, so a
response does not depend on what else is in its batch or in what order the batch was built.
`decode` runs a Hugging Face causal LM from input embeddings (MAGMA-style models);
`SampleRows` lets `generate()` of any transformers model draw the same way (`hf:` models).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from vlmalign.sampling import SamplingParams


def _warpers(params: SamplingParams) -> LogitsProcessorList:
    warpers = LogitsProcessorList()
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k > 0:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    return warpers


class RowSampler:
    """Picks the next token of every row, each row with its own random stream."""

    def __init__(self, params: SamplingParams, seeds: Sequence[int], device: torch.device) -> None:
        self.params = params
        self.warpers = None if params.greedy else _warpers(params)
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.device = device

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.warpers is None:
            return logits.argmax(dim=-1)
        warped = self.warpers(input_ids, logits)  # type: ignore[arg-type]
        probs = warped.softmax(dim=-1).cpu()
        picks = [
            torch.multinomial(row, 1, generator=gen)
            for row, gen in zip(probs, self.generators, strict=True)
        ]
        return torch.cat(picks).to(self.device)


class SampleRows(LogitsProcessor):
    """Lets each row of `generate()` draw from its own seeded stream (RowSampler): every token
    but the drawn one is set to -inf, so generate's greedy step picks the draw."""

    def __init__(self, sampler: RowSampler) -> None:
        self.sampler = sampler

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        picks = self.sampler(input_ids, scores)
        chosen = torch.full_like(scores, float("-inf"))
        chosen.scatter_(1, picks[:, None].to(scores.device), 0.0)
        return chosen  # type: ignore[return-value]


def _cache_argument(lm: Any) -> str:
    """transformers renamed `past_key_values` to `cache`; use whichever this version takes."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _cache_of(output: Any) -> Any:
    return output.cache if "cache" in output else output.past_key_values


@torch.inference_mode()
def decode(
    lm: Any,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    params: SamplingParams,
    seeds: Sequence[int],
    eos_token_ids: Sequence[int],
    token_count: int | None = None,
) -> list[list[int]]:
    """Generate up to max_new_tokens per row from left-padded embeddings, reusing the KV cache.

    `lm` is a Hugging Face causal LM. Returns the new token ids of each row, EOS excluded.
    `token_count` (the tokenizer's size) bans ids past it: heads padded beyond the vocabulary
    (GPT-J: 50400 rows for 50259 tokens) could otherwise emit ids that decode to nothing.
    """
    batch = inputs_embeds.shape[0]
    device = inputs_embeds.device
    sampler = RowSampler(params, seeds, device)
    eos = torch.tensor(list(eos_token_ids), device=device)
    cache_argument = _cache_argument(lm)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = lm(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
    )
    generated = torch.empty((batch, 0), dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    next_position = position_ids[:, -1:] + 1
    for _ in range(params.max_new_tokens):
        logits = out.logits[:, -1, :]
        if token_count is not None and token_count < logits.shape[-1]:
            logits = logits.clone()
            logits[:, token_count:] = float("-inf")
        next_tokens = sampler(generated, logits)
        next_tokens = torch.where(finished, eos[0], next_tokens)
        generated = torch.cat([generated, next_tokens[:, None]], dim=-1)
        finished |= torch.isin(next_tokens, eos)
        if bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
        out = lm(
            input_ids=next_tokens[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            use_cache=True,
            **{cache_argument: _cache_of(out)},
        )
        next_position = next_position + 1
    return [until_eos(row, eos_token_ids) for row in generated.tolist()]


def until_eos(tokens: Sequence[int], eos_token_ids: Sequence[int]) -> list[int]:
    """The tokens before the first end-of-sequence token."""
    stop = set(eos_token_ids)
    end = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
    return list(tokens[:end])
