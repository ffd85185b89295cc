"""Content hashes that key stored work: the same value always gives the same hash.

Stored keys (generations, judge configurations, checkpoints) are these hashes, so the bytes
hashed must never change: sorted-key JSON, with `str()` for values JSON cannot hold.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(value: Any) -> str:
    """sha256 (hex) of a JSON-serialisable value with sorted keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def stable_int(value: Any, bits: int) -> int:
    """A non-negative integer below 2**bits drawn from `stable_hash(value)` (e.g. a seed)."""
    if bits < 4 or bits > 256 or bits % 4:
        raise ValueError(f"bits must be a multiple of 4 from 4 to 256, got {bits}")
    return int(stable_hash(value)[: bits // 4], 16)
