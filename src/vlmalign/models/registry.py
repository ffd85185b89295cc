"""Models by name, listed by `vlmalign models`: vlmalign's own and plugins'.

A model is named `PRESET` or `PRESET:ARGUMENT` (for example `hf:Qwen/Qwen2.5-VL-7B-Instruct`,
`magma:/ckpt/mp_rank_00_model_states.pt` or `openai:gpt-4o`); the argument is a weights path,
hub id or an endpoint's model name. Listing the presets, or loading a scripted `mock:` or
remote `openai:` model, imports no torch: each factory imports its backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlmalign.errors import ModelError
from vlmalign.models.base import Generator, Scorer, Trainable
from vlmalign.models.devices import resolve_device
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.models.engines import Engine
from vlmalign.models.spec import Capability, LoadOptions, ModelSpec, check_role, require
from vlmalign.naming import resolve_name
from vlmalign.registries import PluginRegistry

__all__ = [
    "ENGINE_CAPABILITIES",
    "MODELS",
    "LoadOptions",
    "ModelSpec",
    "capabilities",
    "load_model",
    "load_scorer",
    "load_trainable",
    "model_spec",
    "require_capability",
    "resolve_device",
]


#: Every model by name: vlmalign's own (models/builtin.py) and those of installed plugins, read
#: from the entry-point group `vlmalign.models` on first use (docs/plugins.md).
MODELS: PluginRegistry[ModelSpec] = PluginRegistry(
    "vlmalign.models", ModelSpec, "model", builtins="vlmalign.models.builtin"
)

#: What an engine other than `hf` can do, whatever the model (vLLM generates and serves LoRA).
ENGINE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    "vllm": frozenset({"generate", "serve_adapter"}),
}


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
    load = LoadOptions(device, progress, argument, api)
    model = MODELS.built(spec.name, lambda: spec.factory(load), ModelError)
    check_role(model, name, "generate")  # a plugin's factory may return anything
    return model


def capabilities(name: str, engine: Engine = "hf") -> frozenset[Capability]:
    """What the model `name` can do on `engine`, as its spec (or the engine) declares."""
    spec, _ = model_spec(name)
    return ENGINE_CAPABILITIES.get(engine, spec.capabilities)


def require_capability(
    name: str, capability: Capability, remedy: str, engine: Engine = "hf"
) -> None:
    """Refuse, in one line naming the missing capability, work the model cannot do; asked
    before the model is loaded or anything is written."""
    shown = name if engine == "hf" else f"{name} (engine {engine})"
    require(shown, capabilities(name, engine), capability, remedy)


def load_trainable(name: str, device: str = "auto", progress: bool = True) -> Trainable:
    """A model to finetune; a one-line error for one that does not train (`mock:`)."""
    require_capability(name, "train", "finetune another (`vlmalign models`)")
    model = load_model(name, device, progress)
    check_role(model, name, "train")
    assert isinstance(model, Trainable)
    return model


def load_scorer(name: str, device: str = "auto", progress: bool = True) -> Scorer:
    """A model that scores answers (the `vlm` judge); a one-line error for one that cannot."""
    require_capability(name, "score", "choose another (`vlmalign models`)")
    model = load_model(name, device, progress)
    check_role(model, name, "score")
    assert isinstance(model, Scorer)
    return model
