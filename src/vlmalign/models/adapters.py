"""Finetuned-weight checkpoints: only the trainable weights (safetensors) plus a JSON card.

The weights lie as the model's `adapter_layout()` says: `adapter.safetensors` for MAGMA-style
models; for `hf:` models peft's own files (`adapter_model.safetensors` + `adapter_config.json`,
as `PeftModel.save_pretrained` writes them), so that peft and vLLM read the folder as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from vlmalign.atomic import staged, write_text
from vlmalign.errors import ModelError
from vlmalign.models.base import PromptedModel, ServesAdapters, Trainable
from vlmalign.schemas.adapter_card import AdapterCard

WEIGHTS_FILE = "adapter.safetensors"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"  # peft's SAFETENSORS_WEIGHTS_NAME
WEIGHTS_FILES = (PEFT_WEIGHTS_FILE, WEIGHTS_FILE)  # an adapter folder holds one of them
CARD_FILE = "adapter.json"


@dataclass(frozen=True)
class AdapterLayout:
    """How an adapter folder holds a model's finetuned weights: the weights file's name and
    safetensors header, and what writes the files beside it (peft's adapter_config.json)."""

    weights_file: str = WEIGHTS_FILE
    metadata: Mapping[str, str] = field(default_factory=dict)
    write_config: Callable[[Path], None] | None = None


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """Content hash of the weights (names, shapes, dtypes, values), independent of file layout."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(
    state: dict[str, torch.Tensor],
    directory: Path,
    card: Mapping[str, Any],
    layout: AdapterLayout | None = None,
) -> AdapterCard:
    """Write weights (in the model's `layout`), then card (the card last: its presence means
    the checkpoint is complete). `card` holds the `AdapterCard` fields but `adapter_hash`, which
    is computed here; the card is checked before anything is written, and returned."""
    layout = layout or AdapterLayout()
    directory.mkdir(parents=True, exist_ok=True)
    for other in WEIGHTS_FILES:  # a folder reused by another model keeps one weights file
        if other != layout.weights_file:
            (directory / other).unlink(missing_ok=True)
    digest = state_hash(state)
    full_card = AdapterCard.model_validate({**card, "adapter_hash": digest})
    weights = directory / layout.weights_file
    tensors = {k: v.contiguous() for k, v in state.items()}
    with staged(weights) as tmp:
        save_file(tensors, str(tmp), metadata={**layout.metadata, "sha256": digest})
    if layout.write_config is not None:
        layout.write_config(directory)
    document = full_card.model_dump(mode="json")
    write_text(directory / CARD_FILE, json.dumps(document, indent=2, sort_keys=True) + "\n")
    return full_card


def read_card(directory: Path) -> AdapterCard | None:
    """The folder's card; None when it has none. A card that is unreadable or not a card
    (a wrong type, an unknown key, a newer schema_version) is a `ModelError`; a hyperparameter
    this version does not know is kept (the card's own `HyperparametersRecord`)."""
    path = directory / CARD_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the adapter card ({exc.strerror or exc})") from exc
    try:
        return AdapterCard.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "card"
        raise ModelError(f"{path}: not an adapter card: {where}: {first['msg']}") from exc


def weights_path(directory: Path) -> Path | None:
    """The adapter folder's weights file, whichever layout wrote it."""
    return next((directory / n for n in WEIGHTS_FILES if (directory / n).is_file()), None)


def load_adapter(model: PromptedModel, directory: Path) -> AdapterCard:
    """Load finetuned weights into a model built from the same base; returns the card.

    A `Trainable` model takes the weights in; a model that `ServesAdapters` (vLLM) is pointed
    at the checked folder; any other (a scripted `mock:` model) takes no adapter.
    """
    if not isinstance(model, Trainable | ServesAdapters):
        raise ModelError(f"{directory}: model {model.name!r} takes no adapter; drop the adapter")
    card = read_card(directory)
    weights = weights_path(directory)
    if card is None or weights is None:
        raise ModelError(
            f"{directory}: not an adapter (needs {CARD_FILE} and {' or '.join(WEIGHTS_FILES)})"
        )
    if card.base_model_fingerprint != model.fingerprint():
        raise ModelError(
            f"{directory}: adapter was trained on model {card.base_model!r} "
            f"({card.base_model_fingerprint[:12]}), not on {model.name!r} "
            f"({model.fingerprint()[:12]})"
        )
    state = load_file(str(weights))
    digest = state_hash(state)
    if digest != card.adapter_hash:
        raise ModelError(f"{directory}: weights do not match the card's adapter_hash (corrupt?)")
    settings = card.adapter_settings
    try:
        if isinstance(model, Trainable):
            # Shape the trainable weights as they were trained (LoRA rank, ...), then load them.
            model.configure_adapter(settings)
            model.load_trainable_state_dict(state, digest)
        else:
            model.serve_adapter(directory, settings, digest)
    except ValueError as exc:
        raise ModelError(f"{directory}: {exc}") from exc
    return card
