"""Sampling parameters and per-sample seeds (no torch here: the study config holds them).

Each response is drawn with its own seed, derived from (study seed, item id, condition, sample
index), so a response does not depend on what else is in its batch or in what order the batch
was built. The decoding loop that uses them lives with the models (models/decoding.py).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vlmalign.hashing import identity_fields

_SEED_MASK = (1 << 63) - 1

#: What the sampling key (part of every generation key) has always held. An option added later
#: counts only when set to another value than its default (`hashing.identity_fields`), so adding
#: one keeps every stored response; it must keep that default.
SAMPLING_IDENTITY = frozenset({"max_new_tokens", "temperature", "top_k", "top_p"})


class SamplingParams(BaseModel):
    """Decoding settings; the defaults are the paper's (15 tokens, temperature 0.7, top-k off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(15, ge=1, le=4096)
    temperature: float = Field(0.7, ge=0.0, description="0 means greedy decoding")
    top_k: int = Field(0, ge=0, description="0 = off")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="1.0 = off")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def key(self) -> dict[str, Any]:
        """What of these settings keys a generation (`store.generation_key`)."""
        return identity_fields(self, SAMPLING_IDENTITY)


def derive_seed(study_seed: int, item_id: str, condition: str, sample_index: int) -> int:
    """A 63-bit seed that depends only on what is being sampled, never on batching."""
    text = f"{study_seed}\x1f{item_id}\x1f{condition}\x1f{sample_index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & _SEED_MASK
