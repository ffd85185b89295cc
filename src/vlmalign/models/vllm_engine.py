"""Generation with vLLM for `hf:` models (`--engine vllm`, needs `pip install 'vlmalign[vllm]'`).

The prompts, fingerprint and adapter checks are those of the `hf` engine (models/hf.py), so
stored prompts and adapters are shared; only generation runs in vLLM, with prefix caching (the
few-shot prompts of a study share long prefixes) and one seed per request. A LoRA adapter
trained with the `hf` engine is already in peft's layout: its folder is passed to vLLM as a
LoRARequest as it is. This engine only generates; scoring and training run on the `hf` engine.
A big model spreads over GPUs through vLLM's own tensor and data parallelism
(`parallel_settings`, docs/scaling.md).

vLLM is not installed where the test suite runs: the request building, parameter mapping and
error paths are tested with a stand-in module; the engine itself is unverified on a GPU.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vlmalign.errors import ConfigError, ModelError
from vlmalign.models.base import GenerationRequest, ModelIdentity
from vlmalign.models.hf import (
    LoraSettings,
    Prompter,
    Source,
    fingerprint_of,
    load_processor,
    resolve_source,
)
from vlmalign.models.tokens import eos_token_ids
from vlmalign.prompts import Prompt, PromptFormat, ShotsAs
from vlmalign.sampling import SamplingParams

log = logging.getLogger(__name__)

INSTALL_HINT = "--engine vllm needs vLLM: pip install 'vlmalign[vllm]'"
# The LoRA ranks vLLM can be started with (max_lora_rank).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
PEFT_CONFIG_FILE = "adapter_config.json"  # peft's CONFIG_NAME: what vLLM reads the LoRA shape from


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    return vllm


def check_engine(preset: str, name: str, device: torch.device) -> Any:
    """The vllm module, once the model and the machine can use it."""
    if preset != "hf":
        raise ModelError(f"--engine vllm runs hf:<model> models only, not {name!r}")
    vllm = import_vllm()
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ModelError("--engine vllm needs a CUDA GPU; use --engine hf on this machine")
    return vllm


def sampling_settings(params: SamplingParams, seed: int, stop_ids: Sequence[int]) -> dict[str, Any]:
    """Our SamplingParams as vLLM's (temperature 0 is greedy there too; top-k off is -1)."""
    return {
        "seed": seed,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else -1,
        "max_tokens": params.max_new_tokens,
        "stop_token_ids": list(stop_ids),
        "skip_special_tokens": True,
    }


def parallel_settings(
    tensor_parallel_size: int, data_parallel_size: int, processes: int
) -> dict[str, Any]:
    """vllm.LLM's parallel arguments for a run of `processes` processes.

    One process: vLLM starts a worker per tensor-parallel GPU itself; it refuses data
    parallelism there (one copy of the model per process is how it runs that). Under a launcher
    (`accelerate launch`), every process is one vLLM rank ("external_launcher"): the processes
    are tensor x data, the processes of one copy generate the same share and the copies split
    the work (vlmalign.distributed).
    """
    wanted = tensor_parallel_size * data_parallel_size
    if processes == 1:
        if data_parallel_size > 1:
            raise ConfigError(
                f"data_parallel_size {data_parallel_size} needs one process per GPU: "
                f"accelerate launch --num_processes {wanted} -m vlmalign ... (docs/scaling.md)"
            )
        return {"tensor_parallel_size": tensor_parallel_size}
    if processes != wanted:
        raise ConfigError(
            f"--engine vllm under accelerate launch runs one vLLM rank per process: "
            f"{processes} processes, but tensor_parallel_size x data_parallel_size is "
            f"{tensor_parallel_size} x {data_parallel_size} = {wanted}"
        )
    return {
        "tensor_parallel_size": tensor_parallel_size,
        "data_parallel_size": data_parallel_size,
        "distributed_executor_backend": "external_launcher",
    }


def build_request(prompter: Prompter, request: GenerationRequest) -> dict[str, Any]:
    """One vLLM prompt: the model's text (image placeholder in place) and its image."""
    return {
        "prompt": prompter.model_text(request.prompt_text),
        "multi_modal_data": {"image": request.image.convert("RGB")},
    }


def lora_rank_limit(rank: int) -> int:
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ModelError(f"LoRA rank {rank} is above what vLLM serves ({VLLM_LORA_RANKS[-1]})")


def generation_config(source: Source) -> Any:
    """The model's generation config (its end-of-turn tokens), or None where it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(source.location, revision=source.revision or "main")
    except OSError:
        return None


class VLLMVisionModel(ModelIdentity):
    """An `hf:` model whose generation runs in vLLM (started on first use): a Generator that
    ServesAdapters."""

    def __init__(
        self,
        name: str,
        source: Source,
        processor: Any,
        *,
        fingerprint: str,
        vllm: Any,
        parallel: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.prompter = Prompter(processor, name)
        self.default_prompt_format: PromptFormat = self.prompter.default_prompt_format
        self.stop_ids = eos_token_ids(generation_config(source), processor.tokenizer)
        self._fingerprint = fingerprint
        self._vllm = vllm
        self.parallel = dict(parallel or {})  # parallel_settings(...): passed to vllm.LLM
        self._llm: Any = None
        self._llm_has_lora = False
        self._lora = LoraSettings()
        self._adapter_hash: str | None = None
        self._lora_request: Any = None
        self._adapters_served = 0

    # --- prompts (as the hf engine) ------------------------------------------------------
    def render_prompt(
        self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
    ) -> str:
        return self.prompter.render(prompt, prompt_format, shots_as)

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return self.prompter.answer(answer, prompt_format)

    # --- generation ---------------------------------------------------------------------
    def engine_settings(self) -> dict[str, Any]:
        """vllm.LLM's arguments: prefix caching on, one image per prompt, the parallel
        settings, LoRA when loaded."""
        settings: dict[str, Any] = {
            "model": self.source.location,
            "revision": self.source.revision,
            "enable_prefix_caching": True,
            "limit_mm_per_prompt": {"image": 1},
            "seed": 0,  # the same on every rank of a parallel run, as vLLM requires
            **self.parallel,
        }
        if self._lora_request is not None:
            settings |= {
                "enable_lora": True,
                "max_loras": 1,
                "max_lora_rank": lora_rank_limit(self._lora.r),
            }
        return settings

    def _engine(self) -> Any:
        wants_lora = self._lora_request is not None
        if self._llm is not None and wants_lora and not self._llm_has_lora:
            log.info("restarting vLLM with LoRA support for the adapter")
            self._llm = None
            gc.collect()
            torch.cuda.empty_cache()
        if self._llm is None:
            self._llm = self._vllm.LLM(**self.engine_settings())
            self._llm_has_lora = wants_lora
        return self._llm

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        if not requests:
            return []
        prompts = [build_request(self.prompter, r) for r in requests]
        sampling = [
            self._vllm.SamplingParams(**sampling_settings(params, r.seed, self.stop_ids))
            for r in requests
        ]
        outputs = self._engine().generate(
            prompts, sampling_params=sampling, lora_request=self._lora_request, use_tqdm=False
        )
        return [str(o.outputs[0].text).strip() for o in outputs]

    # --- adapters: served from their folder, never trained here --------------------------
    def serve_adapter(
        self, directory: Path, settings: Mapping[str, Any], adapter_hash: str
    ) -> None:
        """Generate with the LoRA adapter in `directory` (peft's files, as `hf` saved them)."""
        if not (directory / PEFT_CONFIG_FILE).is_file():
            raise ValueError(
                f"no {PEFT_CONFIG_FILE}: --engine vllm serves LoRA adapters in peft's layout "
                "(finetune an hf: model with this version of vlmalign)"
            )
        self._lora = LoraSettings().updated(settings)
        self._adapter_hash = adapter_hash
        from vllm.lora.request import LoRARequest

        self._adapters_served += 1  # vLLM caches adapters by id: each one gets its own
        self._lora_request = LoRARequest(
            adapter_hash[:16], self._adapters_served, str(directory.resolve())
        )


def load_vllm_model(
    name: str,
    preset: str,
    argument: str | None,
    device: torch.device,
    parallel: Mapping[str, Any] | None = None,
) -> VLLMVisionModel:
    """`hf:<argument>` generating through vLLM (no weights are loaded in this process), with
    vLLM's `parallel` arguments (parallel_settings)."""
    vllm = check_engine(preset, name, device)
    assert argument is not None  # the hf preset requires one
    source = resolve_source(argument)
    processor = load_processor(source, argument)
    return VLLMVisionModel(
        f"hf:{argument}",
        source,
        processor,
        fingerprint=fingerprint_of(source),
        vllm=vllm,
        parallel=parallel,
    )
