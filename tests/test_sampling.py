from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from vlmalign.sampling import RowSampler, SamplingParams, derive_seed


def test_defaults_are_the_papers() -> None:
    params = SamplingParams()
    assert (params.max_new_tokens, params.temperature, params.top_k, params.top_p) == (
        15,
        0.7,
        0,
        1.0,
    )


def test_invalid_params_are_rejected() -> None:
    with pytest.raises(ValidationError):
        SamplingParams(temperature=-1)
    with pytest.raises(ValidationError):
        SamplingParams(top_p=0)


def test_seed_depends_on_each_part_only() -> None:
    seed = derive_seed(0, "item", "train/0-shot", 0)
    assert seed == derive_seed(0, "item", "train/0-shot", 0)
    others = {
        derive_seed(1, "item", "train/0-shot", 0),
        derive_seed(0, "item2", "train/0-shot", 0),
        derive_seed(0, "item", "train/1-shot", 0),
        derive_seed(0, "item", "train/0-shot", 1),
    }
    assert seed not in others and len(others) == 4
    assert 0 <= seed < 2**63


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
