"""Decoding for the transformers backends: one KV-cached loop, per-row seeded sampling.

Every transformers backend (MAGMA-style models and `hf:` models) generates the same way:

1. `distinct_prompts` groups the requests that ask the same prompt about the same image;
2. the backend runs each distinct prompt through its model once (`prefill`: the KV cache and
   the next-token logits, projected onto the vocabulary at the last position only), after
   text that every prompt of the batch starts with (a system prompt), prefilled once;
3. `Prefill.rows` gives every request its own row, a copy of its prompt's cache row;
4. `decode` steps the model one token at a time, each row drawing from its own
   torch.Generator seeded with its request's seed (`RowSampler`).

So a response does not depend on its batch: neither on the other prompts nor on how many
samples of its own prompt share the prefill.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from vlmalign.models.kv_cache import (
    cache_argument,
    cache_of,
    left_padded,
    make_room,
    select_cache_rows,
    stack_caches,
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
    """Picks the next token of every row, each row with its own random stream.

    A draw over the whole vocabulary costs about a millisecond on CPU (torch.multinomial draws
    one exponential per token), so rows are drawn on `threads` threads at once; each row's
    draw depends only on its own generator, never on the threads.
    """

    def __init__(
        self,
        params: SamplingParams,
        seeds: Sequence[int],
        device: torch.device,
        threads: int | None = None,
    ) -> None:
        self.params = params
        self.warpers = None if params.greedy else _warpers(params)
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.device = device
        self.threads = max(1, torch.get_num_threads() if threads is None else threads)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.warpers is None:
            return logits.argmax(dim=-1)
        warped = self.warpers(input_ids, logits)  # type: ignore[arg-type]
        probs = warped.softmax(dim=-1).cpu()
        rows = list(zip(probs, self.generators, strict=True))
        if self.threads == 1 or len(rows) == 1:
            picks = [_draw(row) for row in rows]
        else:
            with ThreadPoolExecutor(min(self.threads, len(rows))) as pool:
                picks = list(pool.map(_draw, rows))
        return torch.cat(picks).to(self.device)


def _draw(row: tuple[torch.Tensor, torch.Generator]) -> torch.Tensor:
    probs, generator = row
    return torch.multinomial(probs, 1, generator=generator)


def distinct_prompts(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """(the first request of each distinct key, each request's index among the distinct keys).

    A key names what a prefill depends on (the image and the prompt text); requests with equal
    keys share one prefill.
    """
    index_of: dict[Hashable, int] = {}
    firsts: list[int] = []
    rows: list[int] = []
    for position, key in enumerate(keys):
        if key not in index_of:
            index_of[key] = len(firsts)
            firsts.append(position)
        rows.append(index_of[key])
    return firsts, rows


def length_groups(lengths: Sequence[int], max_padding: float = 0.1) -> list[list[int]]:
    """Indices of `lengths` in groups of similar length, shortest first: a group padded to its
    longest member adds at most `max_padding` of its real tokens (left padding is wasted
    work in a prefill)."""
    groups: list[list[int]] = []
    real = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        length = lengths[index]
        if groups and (len(groups[-1]) + 1) * length <= (1 + max_padding) * (real + length):
            groups[-1].append(index)
            real += length
        else:
            groups.append([index])
            real = length
    return groups


def takes_argument(model: Any, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


@dataclass
class Prefill:
    """Prompts run through the model once, one row per prompt: what decoding continues.

    `position_ids` has the sequence last and the batch just before it ((rows, length), or
    (sections, rows, length) for models with several position axes such as Qwen2-VL's); None
    when the model counts positions itself (then rows must not be padded).
    """

    logits: torch.Tensor  # (rows, vocabulary): the next-token logits after each prompt
    cache: Any
    attention_mask: torch.Tensor  # (rows, length)
    position_ids: torch.Tensor | None

    def copy(self) -> Prefill:
        """An independent copy (a prefill's cache grows in place as decoding goes on)."""
        return Prefill(
            self.logits,
            copy.deepcopy(self.cache),
            self.attention_mask,
            self.position_ids,
        )

    def rows(self, index: Sequence[int]) -> Prefill:
        """One row per entry of `index`, continuing prompt `index[i]` (its cache row copied).

        The cache object is reused (its rows selected in place): use the result, not `self`.
        """
        if list(index) == list(range(self.logits.shape[0])):
            return self
        rows = torch.tensor(list(index), dtype=torch.long, device=self.logits.device)
        positions = self.position_ids
        return Prefill(
            self.logits[rows],
            select_cache_rows(self.cache, rows),
            self.attention_mask[rows.to(self.attention_mask.device)],
            None if positions is None else positions.index_select(-2, rows.to(positions.device)),
        )


def stack_prefills(parts: Sequence[Prefill]) -> Prefill:
    """Prefills of different lengths as one batch, rows in order: each part left-padded to
    the longest (masked out), so that prompts prefilled apart decode together."""
    if len(parts) == 1:
        return parts[0]
    length = max(part.attention_mask.shape[-1] for part in parts)
    positions = [part.position_ids for part in parts]
    return Prefill(
        torch.cat([part.logits for part in parts]),
        stack_caches([part.cache for part in parts], length),
        torch.cat([left_padded(part.attention_mask, length, -1) for part in parts]),
        None
        if any(p is None for p in positions)
        else torch.cat([left_padded(p, length, -1) for p in positions if p is not None], -2),
    )


def prefill(
    model: Any,
    inputs: Mapping[str, Any],
    position_ids: torch.Tensor | None,
    prefix: Prefill | None = None,
) -> Prefill:
    """Run prompts through a Hugging Face model once, keeping the KV cache.

    `prefix` is text every prompt starts with, already prefilled (one row): `inputs` and
    `position_ids` then describe what follows it (left-padded, positions counted from 0), and
    each row continues a copy of the prefix's cache.

    The vocabulary projection (the largest activation: positions × vocabulary) is computed at
    the last position only: with `logits_to_keep=1` where the forward takes it; else, for
    inputs a bare decoder takes, from the decoder's last hidden state.
    """
    kwargs: dict[str, Any] = {**inputs, "use_cache": True}
    mask = inputs["attention_mask"]
    if prefix is not None:
        shared = prefix.copy().rows([0] * mask.shape[0])
        mask = torch.cat([shared.attention_mask, mask], dim=-1)
        kwargs["attention_mask"] = mask
        kwargs[cache_argument(model)] = shared.cache
        if position_ids is not None and shared.position_ids is not None:
            rest = position_ids + shared.position_ids[..., -1:] + 1
            kwargs["position_ids"] = rest
            position_ids = torch.cat([shared.position_ids, rest], dim=-1)
    elif position_ids is not None:
        kwargs["position_ids"] = position_ids
    if takes_argument(model, "logits_to_keep"):
        out = model(**kwargs, logits_to_keep=1)
        return Prefill(out.logits[:, -1], cache_of(out), mask, position_ids)
    if set(inputs) <= {"inputs_embeds", "input_ids", "attention_mask"}:
        hidden = model.get_decoder()(**kwargs)
        logits = model.get_output_embeddings()(hidden.last_hidden_state[:, -1])
        return Prefill(logits, cache_of(hidden), mask, position_ids)
    out = model(**kwargs)
    return Prefill(out.logits[:, -1], cache_of(out), mask, position_ids)


@torch.inference_mode()
def decode(
    model: Any,
    start: Prefill,
    params: SamplingParams,
    seeds: Sequence[int],
    eos_token_ids: Sequence[int],
    token_count: int | None = None,
) -> list[list[int]]:
    """Up to max_new_tokens per row of `start`, one forward of `model` per token.

    `model` is the Hugging Face model whose KV cache `start` holds; each step feeds it one token
    id per row. Returns the new token ids of each row, end of sequence excluded. `token_count`
    (the tokenizer's size) bans ids past it: heads padded beyond the vocabulary (GPT-J: 50400
    rows for 50259 tokens) could otherwise emit ids that decode to nothing.
    """
    logits, mask, positions = start.logits, start.attention_mask, start.position_ids
    cache = make_room(start.cache, params.max_new_tokens - 1)
    batch = logits.shape[0]
    device = logits.device
    sampler = RowSampler(params, seeds, device)
    eos = torch.tensor(list(eos_token_ids), device=device)
    cache_keyword = cache_argument(model)
    generated = torch.empty((batch, 0), dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    for step in range(params.max_new_tokens):
        if token_count is not None and token_count < logits.shape[-1]:
            logits = logits.clone()
            logits[:, token_count:] = float("-inf")
        next_tokens = sampler(generated, logits)
        next_tokens = torch.where(finished, eos[0], next_tokens)
        generated = torch.cat([generated, next_tokens[:, None]], dim=-1)
        finished |= torch.isin(next_tokens, eos)
        if step + 1 == params.max_new_tokens or bool(finished.all()):
            break
        mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
        step_inputs: dict[str, Any] = {"input_ids": next_tokens[:, None], "attention_mask": mask}
        if positions is not None:
            positions = positions[..., -1:] + 1
            step_inputs["position_ids"] = positions
        out = model(**step_inputs, use_cache=True, **{cache_keyword: cache})
        logits, cache = out.logits[:, -1], cache_of(out)
    return [until_eos(row, eos_token_ids) for row in generated.tolist()]


def until_eos(tokens: Sequence[int], eos_token_ids: Sequence[int]) -> list[int]:
    """The tokens before the first end-of-sequence token."""
    stop = set(eos_token_ids)
    end = next((i for i, t in enumerate(tokens) if t in stop), len(tokens))
    return list(tokens[:end])
