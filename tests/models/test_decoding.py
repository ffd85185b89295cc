"""The shared decode path: per-row seeded sampling, prompt grouping, prefill and KV-cache
bookkeeping (rows, stacking, room to grow), the stop rule, end-of-sequence ids."""

from __future__ import annotations

import types

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from vlmalign.errors import ModelError
from vlmalign.models.decoding import (
    Prefill,
    RowSampler,
    decode,
    distinct_prompts,
    length_groups,
    prefill,
    stack_prefills,
    until_eos,
)
from vlmalign.models.tokens import eos_token_ids
from vlmalign.sampling import SamplingParams

CPU = torch.device("cpu")
GREEDY = SamplingParams(max_new_tokens=5, temperature=0.0)


# --- sampling -------------------------------------------------------------------------------
def test_rows_sample_independently_of_their_neighbours() -> None:
    logits = torch.randn(3, 50)
    params = SamplingParams(temperature=1.0)
    ids = torch.empty((3, 0), dtype=torch.long)
    batch = RowSampler(params, [5, 6, 7], CPU)(ids, logits)
    alone = RowSampler(params, [6], CPU)(ids[1:2], logits[1:2])
    assert batch[1] == alone[0]


def test_a_row_draws_what_multinomial_draws_with_its_seed_on_any_number_of_threads() -> None:
    logits = torch.randn(6, 40)
    params = SamplingParams(temperature=1.0)
    ids = torch.empty((6, 0), dtype=torch.long)
    seeds = [11, 12, 13, 14, 15, 16]
    expected = [
        int(torch.multinomial(row.softmax(-1), 1, generator=torch.Generator().manual_seed(s)))
        for row, s in zip(logits, seeds, strict=True)
    ]
    for threads in (1, 3):
        assert RowSampler(params, seeds, CPU, threads=threads)(ids, logits).tolist() == expected


def test_top_k_one_is_greedy_and_greedy_is_argmax() -> None:
    logits = torch.randn(4, 30)
    ids = torch.empty((4, 0), dtype=torch.long)
    top1 = RowSampler(SamplingParams(top_k=1), [1, 2, 3, 4], CPU)(ids, logits)
    greedy = RowSampler(SamplingParams(temperature=0), [1, 2, 3, 4], CPU)(ids, logits)
    assert torch.equal(top1, logits.argmax(-1)) and torch.equal(greedy, top1)


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.tensor([[5.0, 4.9, -5.0, -5.0, -5.0]])
    params = SamplingParams(temperature=1.0, top_p=0.5)
    picks = {int(RowSampler(params, [s], CPU)(torch.empty((1, 0)), logits)) for s in range(40)}
    assert picks == {0}


# --- grouping -------------------------------------------------------------------------------
def test_requests_with_the_same_key_share_a_prompt() -> None:
    firsts, rows = distinct_prompts(["a", "b", "a", "c", "b", "a"])
    assert firsts == [0, 1, 3]
    assert rows == [0, 1, 0, 2, 1, 0]
    assert distinct_prompts(range(3)) == ([0, 1, 2], [0, 1, 2])


def test_length_groups_pad_each_group_by_at_most_a_tenth() -> None:
    # Sorted: 10, 10, 11 (3 x 11 = 33 <= 1.1 x 31), then 30 would pad: 4 x 30 = 120 > 1.1 x 61.
    assert length_groups([30, 10, 11, 10, 31, 60]) == [[1, 3, 2], [0, 4], [5]]
    assert length_groups([7]) == [[0]]
    assert length_groups([5, 5, 5], max_padding=0.0) == [[0, 1, 2]]


def test_sequences_end_at_their_first_end_of_sequence_token() -> None:
    assert until_eos([5, 6, 2, 7, 2], [2]) == [5, 6]
    assert until_eos([5, 9, 6], [2, 9]) == [5]
    assert until_eos([5, 6], [2]) == [5, 6]
    assert until_eos([], [2]) == []


def test_end_of_sequence_ids_come_from_config_then_tokenizer_once_each() -> None:
    tokenizer = types.SimpleNamespace(eos_token_id=2)
    assert eos_token_ids(types.SimpleNamespace(eos_token_id=[7, 2]), tokenizer) == [7, 2]
    assert eos_token_ids(types.SimpleNamespace(eos_token_id=9), tokenizer) == [9, 2]
    assert eos_token_ids(None, tokenizer) == [2]
    with pytest.raises(ModelError, match="no end-of-sequence"):
        eos_token_ids(None, types.SimpleNamespace(eos_token_id=None))


# --- prefill and decode on a tiny Llama -------------------------------------------------------
@pytest.fixture(scope="module")
def lm() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


PROMPTS = [[5, 9, 3, 7, 1, 2], [5, 9, 3, 8], [5, 9, 4, 4, 6, 6, 6, 1, 3]]


def _left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def _prefilled(lm, prompts: list[list[int]], prefix: Prefill | None = None) -> Prefill:
    ids, mask = _left_padded(prompts)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return prefill(lm, {"input_ids": ids, "attention_mask": mask}, positions, prefix)


def _greedy_without_cache(lm, prompt: list[int], steps: int) -> list[int]:
    """A second implementation: the whole sequence through the model at every step."""
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = lm(input_ids=torch.tensor([sequence])).logits[0, -1]
            sequence.append(int(logits.argmax()))
    return sequence[len(prompt) :]


def test_prefill_projects_the_last_position_onto_the_vocabulary_only(lm) -> None:
    shapes = []
    hook = lm.get_output_embeddings().register_forward_hook(
        lambda _m, _a, out: shapes.append(tuple(out.shape))
    )
    try:
        with torch.inference_mode():
            start = _prefilled(lm, PROMPTS)
    finally:
        hook.remove()
    assert shapes == [(3, 1, 64)]
    assert start.logits.shape == (3, 64)


def test_batched_decode_with_shared_rows_matches_a_loop_without_cache(lm) -> None:
    """Rows copied from one prompt's prefill, stacked prefills and in-place cache growth
    continue each prompt exactly as recomputing the whole sequence does."""
    expected = [_greedy_without_cache(lm, p, GREEDY.max_new_tokens) for p in PROMPTS]
    with torch.inference_mode():
        start = stack_prefills([_prefilled(lm, PROMPTS[:2]), _prefilled(lm, PROMPTS[2:])])
        rows = [0, 0, 1, 2, 2]
        tokens = decode(lm, start.rows(rows), GREEDY, [1, 2, 3, 4, 5], eos_token_ids=[63])
    assert tokens == [expected[r] for r in rows]


def test_a_common_prefix_prefilled_once_continues_every_prompt(lm) -> None:
    expected = [_greedy_without_cache(lm, p, GREEDY.max_new_tokens) for p in PROMPTS]
    with torch.inference_mode():
        prefix = _prefilled(lm, [[5, 9]])
        parts = [_prefilled(lm, [p[2:] for p in PROMPTS[:2]], prefix)]
        parts.append(_prefilled(lm, [PROMPTS[2][2:]], prefix))  # the prefix is reused intact
        tokens = decode(lm, stack_prefills(parts), GREEDY, [1, 2, 3], eos_token_ids=[63])
    assert tokens == expected


def test_sampled_rows_of_one_prompt_draw_as_separate_requests(lm) -> None:
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    seeds = [21, 22, 23, 24, 25]
    with torch.inference_mode():
        shared = decode(lm, _prefilled(lm, PROMPTS[:1]).rows([0] * 5), params, seeds, [63])
        alone = [decode(lm, _prefilled(lm, PROMPTS[:1]), params, [s], [63])[0] for s in seeds]
    assert shared == alone
    assert len({tuple(t) for t in shared}) > 1  # the seeds matter


def test_decoding_stops_at_end_of_sequence_and_bans_ids_past_the_tokenizer(lm) -> None:
    with torch.inference_mode():
        start = _prefilled(lm, PROMPTS)
        first = start.logits.argmax(-1)
        stopped = decode(lm, start, GREEDY, [0, 0, 0], eos_token_ids=first.tolist())
    assert stopped == [[], [], []]
    with torch.inference_mode():
        banned = decode(lm, _prefilled(lm, PROMPTS), GREEDY, [0, 0, 0], [0], token_count=10)
    assert all(0 < t < 10 for row in banned for t in row)
