"""Token bookkeeping shared by the transformers backends (no torch here)."""

from __future__ import annotations

from typing import Any

from vlmalign.errors import ModelError

IGNORE = -100
"""Label of positions that carry no scored token (prompt, image, padding): the index that
torch's cross-entropy and our log-likelihood sums skip."""


def eos_token_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """Every token that ends an answer: the generation config's, then the tokenizer's."""
    ids: list[int] = []
    configured = getattr(generation_config, "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in ids:
                ids.append(token)
    if not ids:
        raise ModelError("model has no end-of-sequence token")
    return ids
