"""`HFVisionModel`: one Hugging Face image-text-to-text model with its processor, put together
from its parts (inputs, inference, LoRA), with its prompts and its finetuning loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlmalign.models.base import LossOn, ModelIdentity
from vlmalign.models.decoding import takes_argument
from vlmalign.models.hf.inference import HFInference
from vlmalign.models.hf.inputs import ANSWER_TOKEN_TYPE, FIRST_POSITION, _overrides_position_ids
from vlmalign.models.hf.lora import LoraAdapters, LoraSettings
from vlmalign.models.hf.prompts import Prompter
from vlmalign.models.losses import mean_per_example
from vlmalign.models.tokens import IGNORE, eos_token_ids
from vlmalign.prompts import Prompt, PromptFormat, ShotsAs


class HFVisionModel(ModelIdentity, HFInference, LoraAdapters):
    """A Hugging Face image-text-to-text model: a Generator, Scorer and Trainable (LoRA).

    An `nn.Module` (through `LoraAdapters`); `hf` is the transformers model.
    """

    encoder_trainable = False  # LoRA adapts the language model only

    def __init__(
        self,
        name: str,
        model: Any,
        processor: Any,
        *,
        fingerprint: str,
        lora: LoraSettings | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.hf = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation continues every row at the same end
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.prompter = Prompter(processor, name)
        self.default_prompt_format: PromptFormat = self.prompter.default_prompt_format
        self._fingerprint = fingerprint
        self._adapter_hash: str | None = None
        self._lora = lora or LoraSettings()
        # peft's wrapper, once LoRA is added. Not a registered submodule: it wraps `hf` itself,
        # whose modules peft adapts in place, so `hf` keeps serving inference and training.
        self._peft: list[Any] = []
        self.eos_token_ids = eos_token_ids(model.generation_config, self.tokenizer)
        self.image_token_id = self._image_token_id()
        takes_positions = takes_argument(self.hf, "position_ids")
        self._own_positions = _overrides_position_ids(model) and takes_positions
        self._plain_positions = not self._own_positions and takes_positions
        self._first_position = FIRST_POSITION.get(str(model.config.model_type), 0)
        # Requests asking the same prompt about the same image share one prefill.
        self.share_prefill = True
        self.encoder_calls = 0  # images passed to the vision tower (not cached here)
        self._answer_token_type = ANSWER_TOKEN_TYPE.get(str(model.config.model_type), 0)
        self.requires_grad_(False)
        self.eval()

    # --- prompts ------------------------------------------------------------------------
    def render_prompt(
        self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
    ) -> str:
        return self.prompter.render(prompt, prompt_format, shots_as)

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return self.prompter.answer(answer, prompt_format)

    # --- training -----------------------------------------------------------------------
    def training_loss(
        self,
        images: Sequence[Any],
        prompt_texts: Sequence[str],
        answers: Sequence[str],
        loss_on: LossOn = "answer",
    ) -> torch.Tensor:
        """Next-token loss on the answers + end of sequence, or on all text (`caption`): each
        example's mean, averaged over examples (`losses.mean_per_example`)."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            eos = self.eos_token_ids[0]
        tails = [[*self._token_ids(answer), eos] for answer in answers]
        inputs, appended = self._with_continuations(self._encode(images, prompt_texts), tails)
        ids = inputs["input_ids"]
        if loss_on == "answer":
            scored = appended
        else:
            scored = inputs["attention_mask"].bool() & ~self._image_positions(ids)
        _, rows, logits = self._scored(inputs, ids.masked_fill(~scored, IGNORE))
        targets = ids[:, 1:][scored[:, 1:]]
        return mean_per_example(logits, targets, rows, len(answers))

    # Calling the module (as accelerate's DDP wrapper does) computes the training loss.
    forward = training_loss
