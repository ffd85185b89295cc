"""Finetuned-weight checkpoints: only the trainable weights (safetensors) plus a JSON card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vlmalign.errors import ModelError
from vlmalign.models.base import VisionLanguageModel

WEIGHTS_FILE = "adapter.safetensors"
CARD_FILE = "adapter.json"


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """Content hash of the weights (names, shapes, dtypes, values), independent of file layout."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(state: dict[str, torch.Tensor], directory: Path, card: dict[str, Any]) -> str:
    """Write weights then card (the card last: its presence means the checkpoint is complete)."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = state_hash(state)
    weights = directory / WEIGHTS_FILE
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"sha256": digest})
    tmp.replace(weights)
    full_card = {**card, "adapter_hash": digest}
    card_tmp = directory / (CARD_FILE + ".tmp")
    card_tmp.write_text(json.dumps(full_card, indent=2, sort_keys=True, default=str) + "\n")
    card_tmp.replace(directory / CARD_FILE)
    return digest


def read_card(directory: Path) -> dict[str, Any] | None:
    try:
        card: dict[str, Any] = json.loads((directory / CARD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return card


def load_adapter(model: VisionLanguageModel, directory: Path) -> dict[str, Any]:
    """Load finetuned weights into a model built from the same base; returns the card."""
    card = read_card(directory)
    if card is None or not (directory / WEIGHTS_FILE).is_file():
        raise ModelError(f"{directory}: not an adapter (needs {WEIGHTS_FILE} and {CARD_FILE})")
    base = card.get("base_model_fingerprint")
    if base != model.fingerprint():
        raise ModelError(
            f"{directory}: adapter was trained on model {card.get('base_model')!r} "
            f"({str(base)[:12]}), not on {model.name!r} ({model.fingerprint()[:12]})"
        )
    state = load_file(str(directory / WEIGHTS_FILE))
    digest = state_hash(state)
    if digest != card.get("adapter_hash"):
        raise ModelError(f"{directory}: weights do not match the card's adapter_hash (corrupt?)")
    try:
        # Shape the trainable weights as they were trained (LoRA rank, ...) before loading them.
        model.configure_adapter(card.get("adapter_settings") or {})
        model.load_trainable_state_dict(state, digest)
    except ValueError as exc:
        raise ModelError(f"{directory}: {exc}") from exc
    return card
