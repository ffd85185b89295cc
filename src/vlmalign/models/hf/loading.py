"""Loading an `hf:` model: its source resolved, its processor and weights read (in bf16/fp16 on
GPU), and the `HFVisionModel` built around them."""

from __future__ import annotations

import logging
from typing import Any

import torch

from vlmalign.errors import ModelError
from vlmalign.models.hf.model import HFVisionModel
from vlmalign.models.hf.source import Source, fingerprint_of, resolve_source

log = logging.getLogger(__name__)


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_processor(source: Source, argument: str) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source.location, revision=source.revision)
    except (OSError, ValueError) as exc:
        raise ModelError(f"hf:{argument}: cannot load its processor: {_first_line(exc)}") from exc


def load_hf_model(argument: str, device: torch.device, progress: bool = True) -> HFVisionModel:
    """`hf:<argument>`: a hub id (optionally `@revision`) in the local cache, or a folder."""
    from transformers import AutoModelForImageTextToText

    source = resolve_source(argument)
    processor = load_processor(source, argument)
    log.info("loading %s", source.location)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source.location, revision=source.revision, dtype=default_dtype(device)
        )
    except ValueError as exc:
        raise ModelError(
            f"hf:{argument}: not an image-text-to-text model ({_first_line(exc)})"
        ) from exc
    except OSError as exc:
        raise ModelError(f"hf:{argument}: cannot load its weights: {_first_line(exc)}") from exc
    model = model.to(device).eval()  # type: ignore[arg-type]
    return HFVisionModel(f"hf:{argument}", model, processor, fingerprint=fingerprint_of(source))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
