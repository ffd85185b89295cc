"""Hugging Face vision-language models (`hf:<hub id or folder>`), finetuned with LoRA.

Any model that `AutoModelForImageTextToText` loads (LLaVA, Qwen2/2.5-VL, SmolVLM/Idefics3,
PaliGemma, ...) is driven through its own processor: the chat template renders the prompt, the
processor expands the image placeholder and prepares the pixels. Finetuning trains LoRA weights
on the language model's attention and MLP projections through peft's own API (`get_peft_model`,
`get_peft_model_state_dict`/`set_peft_model_state_dict`); the vision tower, the projector and
every base weight stay frozen, and an adapter folder holds peft's files, which
`PeftModel.from_pretrained` and vLLM's LoRARequest read as they are.

One subject a module: `source` (where the weights come from, the fingerprint), `prompts` (the
`Prompter`), `inputs` (batches and the scored forward pass), `inference` (generation and
scoring), `lora` (LoRA through peft), `model` (`HFVisionModel`), `loading` (`load_hf_model`).
This package re-exports their public names.
"""

from vlmalign.models.hf.inference import HFInference
from vlmalign.models.hf.inputs import HFInputs
from vlmalign.models.hf.loading import default_dtype, load_hf_model, load_processor
from vlmalign.models.hf.lora import LoraAdapters, LoraSettings
from vlmalign.models.hf.model import HFVisionModel
from vlmalign.models.hf.prompts import Prompter, chat_conversation
from vlmalign.models.hf.source import (
    Source,
    fingerprint_of,
    hub_commit,
    parse_source,
    resolve_source,
)

__all__ = [
    "HFInference",
    "HFInputs",
    "HFVisionModel",
    "LoraAdapters",
    "LoraSettings",
    "Prompter",
    "Source",
    "chat_conversation",
    "default_dtype",
    "fingerprint_of",
    "hub_commit",
    "load_hf_model",
    "load_processor",
    "parse_source",
    "resolve_source",
]
