"""Content hashes that key stored work: the same value always gives the same hash.

Stored keys (generations, judge configurations, checkpoints) are these hashes, so the bytes
hashed must never change: sorted-key JSON, with `str()` for values JSON cannot hold.

A key built from a settings model (sampling, a finetuning config) hashes its declared identity
(`identity_fields`), never the whole dump: the fields the key has always held, and any other
field only when it differs from its default. So an option added with a default changes no key
that exists, and changes the key as soon as it is set to something else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def stable_hash(value: Any) -> str:
    """sha256 (hex) of a JSON-serialisable value with sorted keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def stable_int(value: Any, bits: int) -> int:
    """A non-negative integer below 2**bits drawn from `stable_hash(value)` (e.g. a seed)."""
    if bits < 4 or bits > 256 or bits % 4:
        raise ValueError(f"bits must be a multiple of 4 from 4 to 256, got {bits}")
    return int(stable_hash(value)[: bits // 4], 16)


def left_out(model: BaseModel, keyed: Collection[str], ignored: Collection[str] = ()) -> set[str]:
    """The fields of `model` outside its identity: every `ignored` field (a setting the thing
    keyed does not depend on), and every field not `keyed` that holds its default.

    `keyed` lists the fields the key has always held (they count whatever their value); a field
    added later counts only once set to another value, which is what it meant before it existed.
    So such a field must keep its default: changing the default would give configs at the old
    one the keys of configs without the field. Unknown names are an error (a renamed field must
    be declared again, and renaming a keyed field changes its keys).
    """
    fields = type(model).model_fields
    unknown = (set(keyed) | set(ignored)) - fields.keys()
    if unknown:
        raise ValueError(f"{type(model).__name__} has no field {', '.join(sorted(unknown))}")
    return {
        name
        for name, field in fields.items()
        if name in ignored
        or (
            name not in keyed
            and getattr(model, name) == field.get_default(call_default_factory=True)
        )
    }


def identity_fields(
    model: BaseModel, keyed: Collection[str], ignored: Collection[str] = ()
) -> dict[str, Any]:
    """`model`'s declared identity as a dict (`model_dump` of the fields `left_out` keeps): the
    `keyed` fields, and any other field that is not `ignored` and differs from its default."""
    return model.model_dump(exclude=left_out(model, keyed, ignored))
