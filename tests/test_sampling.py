"""Sampling settings and per-sample seeds (the decoding loop is tested in tests/models)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vlmalign.sampling import SamplingParams, derive_seed


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
