"""Per-row seeded sampling, the KV-cached decode loop's stop rule, and end-of-sequence ids."""

from __future__ import annotations

import types

import pytest
import torch

from vlmalign.errors import ModelError
from vlmalign.models.decoding import RowSampler, SampleRows, until_eos
from vlmalign.models.tokens import eos_token_ids
from vlmalign.sampling import SamplingParams


def test_rows_sample_independently_of_their_neighbours() -> None:
    logits = torch.randn(3, 50)
    params = SamplingParams(temperature=1.0)
    ids = torch.empty((3, 0), dtype=torch.long)
    batch = RowSampler(params, [5, 6, 7], torch.device("cpu"))(ids, logits)
    alone = RowSampler(params, [6], torch.device("cpu"))(ids[1:2], logits[1:2])
    assert batch[1] == alone[0]


def test_top_k_one_is_greedy_and_greedy_is_argmax() -> None:
    logits = torch.randn(4, 30)
    ids = torch.empty((4, 0), dtype=torch.long)
    top1 = RowSampler(SamplingParams(top_k=1), [1, 2, 3, 4], torch.device("cpu"))(ids, logits)
    greedy = RowSampler(SamplingParams(temperature=0), [1, 2, 3, 4], torch.device("cpu"))(
        ids, logits
    )
    assert torch.equal(top1, logits.argmax(-1)) and torch.equal(greedy, top1)


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.tensor([[5.0, 4.9, -5.0, -5.0, -5.0]])
    params = SamplingParams(temperature=1.0, top_p=0.5)
    picks = {
        int(RowSampler(params, [s], torch.device("cpu"))(torch.empty((1, 0)), logits))
        for s in range(40)
    }
    assert picks == {0}


def test_generate_picks_exactly_the_rows_draw() -> None:
    logits = torch.randn(2, 20)
    ids = torch.empty((2, 0), dtype=torch.long)
    params = SamplingParams(temperature=1.0)
    expected = RowSampler(params, [3, 4], torch.device("cpu"))(ids, logits)
    scores = SampleRows(RowSampler(params, [3, 4], torch.device("cpu")))(ids, logits)
    assert torch.equal(scores.argmax(-1), expected)
    assert torch.isinf(scores).sum() == 2 * 19  # every other token is ruled out


def test_an_answer_ends_at_its_first_end_of_sequence_token() -> None:
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
