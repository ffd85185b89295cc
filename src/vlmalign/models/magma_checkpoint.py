"""Read the released MAGMA checkpoint and rename its weights to our module layout.

The official checkpoint (`mp_rank_00_model_states.pt`, about 13 GB) is a DeepSpeed model-state
file, `{"module": state_dict, ...}` in float16, saved from Aleph Alpha's `Magma` class
(github.com/Aleph-Alpha/magma, `magma/magma.py`). Its language model is GPT-J 6B written as the
GPT-Neo class of the `finetuneanon/transformers` fork (`config.jax = True`, rotary), so its
names differ from stock transformers' `GPTJForCausalLM`.

Official key -> our key (`{i}` is the block index; unlisted parts stay the same):

- `lm.transformer.h.{i}.attn.attention.{q,k,v,out}_proj.weight`
  -> `lm.transformer.h.{i}.attn.{q,k,v,out}_proj.weight`
- `lm.transformer.h.{i}.mlp.0.c_fc.{weight,bias}` -> `...h.{i}.mlp.0.fc_in.{weight,bias}`
- `lm.transformer.h.{i}.mlp.0.c_proj.{weight,bias}` -> `...h.{i}.mlp.0.fc_out.{weight,bias}`
- `lm.transformer.h.{i}.mlp.1.adapter.{0,2}.{weight,bias}` (MAGMA's adapter), `...h.{i}.ln_1.*`,
  `lm.transformer.wte.weight`, `lm.transformer.ln_f.*`, `lm.lm_head.{weight,bias}`,
  `image_prefix.{proj,ln}.{weight,bias}`: unchanged
- `image_prefix.enc.<CLIP RN50x16 trunk>` -> `image_prefix.enc.resnet.<same>`

Explicit rules for the rest (anything else, and anything of ours left unfilled, is an error
that lists the keys):

- **Aliases.** `Magma.__init__` keeps `self.word_embedding = lm.transformer.wte` and
  `self.transformer = lm.transformer.h` as attributes, so PyTorch saves those modules twice:
  `word_embedding.weight` and `transformer.{i}.*` are the same tensors as
  `lm.transformer.wte.weight` and `lm.transformer.h.{i}.*`. They are folded into the canonical
  name after checking that both copies agree.
- **Fixed buffers.** The fork's attention registers its causal mask (`attn.attention.bias`), a
  mask fill value (`attn.attention.masked_bias`) and, in some versions, rotary tables
  (`attn.attention.sin` / `.cos`). None is learned; stock GPT-J rebuilds all of them from its
  config, so they are skipped.
- **Embedding rows.** The official code resized the input embedding to its tokenizer (GPT-2 +
  `<|image|>` = 50,258 rows) but the fork left the untied `lm_head` at GPT-J's 50,400. We keep
  GPT-J's 50,400 rows in both (no head truncation: the `lm_head` is used as trained) and fill the
  input-embedding rows past the checkpoint's with zeros; those ids are never fed as input.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from vlmalign.errors import ModelError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "mp_rank_00_model_states.pt"
TRUST_PICKLE_ENV = "VLMALIGN_MAGMA_TRUST_PICKLE"
EMBEDDING_KEY = "lm.transformer.wte.weight"

_BLOCK = r"lm\.transformer\.h\.(\d+)\."
# Official name -> our name; the first pattern that matches wins.
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (
            _BLOCK + r"attn\.attention\.([qkv]_proj|out_proj)\.weight$",
            r"lm.transformer.h.\1.attn.\2.weight",
        ),
        (_BLOCK + r"mlp\.0\.c_fc\.(weight|bias)$", r"lm.transformer.h.\1.mlp.0.fc_in.\2"),
        (_BLOCK + r"mlp\.0\.c_proj\.(weight|bias)$", r"lm.transformer.h.\1.mlp.0.fc_out.\2"),
        (_BLOCK + r"mlp\.1\.adapter\.([02])\.(weight|bias)$", r"\g<0>"),
        (_BLOCK + r"ln_1\.(weight|bias)$", r"\g<0>"),
        (r"lm\.transformer\.(wte\.weight|ln_f\.weight|ln_f\.bias)$", r"\g<0>"),
        (r"lm\.lm_head\.(weight|bias)$", r"\g<0>"),
        (r"image_prefix\.enc\.(.+)$", r"image_prefix.enc.resnet.\1"),
        (r"image_prefix\.(proj|ln)\.(weight|bias)$", r"\g<0>"),
    )
)
# Duplicate names of the same tensors (see the module docstring) -> canonical official names.
ALIASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"word_embedding\.weight$"), "lm.transformer.wte.weight"),
    (re.compile(r"transformer\.(\d+)\.(.+)$"), r"lm.transformer.h.\1.\2"),
)
SKIPPED = re.compile(_BLOCK + r"attn\.attention\.(bias|masked_bias|sin|cos)$")
_LISTED = 8  # keys named in an error message


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The `module` state dict of a DeepSpeed model-state file, memory-mapped where possible.

    Only tensors and plain containers are unpickled unless VLMALIGN_MAGMA_TRUST_PICKLE=1.
    """
    trusted = os.environ.get(TRUST_PICKLE_ENV) == "1"
    try:
        loaded = _torch_load(path, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsupported is None:
            raise ModelError(f"{path}: cannot read as a PyTorch checkpoint") from exc
        raise ModelError(
            f"{path}: holds Python objects besides tensors ({unsupported[1]}); "
            f"if you trust the file, set {TRUST_PICKLE_ENV}=1 to unpickle it fully"
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"{path}: cannot read as a PyTorch checkpoint ({exc})") from exc
    state = loaded.get("module", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a MAGMA checkpoint (expected {{'module': state_dict}})")
    return state


def _torch_load(path: Path, weights_only: bool) -> object:
    """torch.load, memory-mapped when the file allows it (13 GB need not sit in RAM twice)."""
    if zipfile.is_zipfile(path):  # legacy (pre-1.6) files cannot be mapped
        try:
            return torch.load(path, map_location="cpu", mmap=True, weights_only=weights_only)
        except RuntimeError as exc:
            log.warning("cannot memory-map %s (%s); reading it into memory", path, exc)
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def fold_aliases(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official state with duplicate names folded into their canonical names."""
    folded: dict[str, torch.Tensor] = {}
    aliased: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        canonical = _alias_target(name)
        if canonical is None:
            folded[name] = tensor
        else:
            aliased[canonical] = tensor
    for name, tensor in aliased.items():
        original = folded.setdefault(name, tensor)
        if original is not tensor and not _same_tensor(original, tensor):
            raise ModelError(f"checkpoint has two different values for {name} (and its alias)")
    return folded


def to_our_names(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Rename an official state dict to our keys and check it fills `expected` exactly.

    `expected` maps each of our keys to its shape. Raises ModelError naming every unknown,
    missing or misshapen key.
    """
    ours: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in fold_aliases(state).items():
        if SKIPPED.match(name):
            continue
        target = _rename(name)
        if target is None or target not in expected:
            unknown.append(name)
            continue
        ours[target] = tensor
    missing = sorted(set(expected) - set(ours))
    if unknown or missing:
        raise ModelError(
            "checkpoint does not match the MAGMA layout: "
            + "; ".join(
                f"{len(keys)} {what} key(s): {_listing(keys)}"
                for what, keys in (("unexpected", sorted(unknown)), ("missing", missing))
                if keys
            )
        )
    if EMBEDDING_KEY in ours:
        ours[EMBEDDING_KEY] = _pad_rows(ours[EMBEDDING_KEY], expected[EMBEDDING_KEY])
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(expected[k])}"
        for k, v in ours.items()
        if v.shape != expected[k]
    ]
    if wrong:
        raise ModelError(f"checkpoint weights have the wrong shape: {_listing(wrong)}")
    return ours


def _alias_target(name: str) -> str | None:
    for pattern, replacement in ALIASES:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return None


def _rename(name: str) -> str | None:
    for pattern, replacement in RENAMES:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return None


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    # torch.save keeps shared storage shared, so aliases normally have one data pointer.
    return a.data_ptr() == b.data_ptr() or torch.equal(a, b)


def _pad_rows(embedding: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Zero rows for ids past the checkpoint's vocabulary (see the module docstring)."""
    rows = embedding.shape[0]
    if embedding.ndim != 2 or rows >= shape[0] or embedding.shape[1:] != shape[1:]:
        return embedding  # equal, or wrong: the shape check reports it
    log.info("input embedding: %d checkpoint rows, %d zero rows after them", rows, shape[0] - rows)
    padded = embedding.new_zeros(shape)
    padded[:rows] = embedding
    return padded


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f", ... ({len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")
