"""Content hashes key stored work, so the bytes they hash must never change: each case below
spells out those bytes (sorted-key JSON as `json.dumps` writes it) and hashes them directly."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from vlmalign.hashing import stable_hash, stable_int
from vlmalign.store import generation_key


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_stable_hash_is_sha256_of_sorted_key_json() -> None:
    value = {"b": [2, 3], "a": {"z": None, "y": "é"}}
    assert stable_hash(value) == sha256('{"a": {"y": "\\u00e9", "z": null}, "b": [2, 3]}')
    assert stable_hash({"when": date(2026, 1, 31)}) == sha256('{"when": "2026-01-31"}')


def test_generation_keys_of_existing_stores_are_unchanged() -> None:
    key = generation_key(
        model_fingerprint="fp",
        adapter_hash=None,
        image_sha256="img",
        prompt="<|image|>Q: Is it fine? A:",
        sampling={"temperature": 0.7, "max_new_tokens": 20},
        seed=3,
        sample_index=1,
    )
    written = (
        '{"adapter": null, "image": "img", "model": "fp", "prompt": "<|image|>Q: Is it fine? A:", '
        '"sample": 1, "sampling": {"max_new_tokens": 20, "temperature": 0.7}, "seed": 3}'
    )
    assert key == sha256(written)


def test_stable_int_takes_the_leading_hex_digits() -> None:
    digest = sha256('["annotate-sample", 0]')
    assert stable_int(["annotate-sample", 0], 64) == int(digest[:16], 16)
    assert stable_int(["annotate-sample", 0], 32) == int(digest[:8], 16)
    assert 0 <= stable_int("x", 4) < 16
    with pytest.raises(ValueError, match="multiple of 4"):
        stable_int("x", 30)
