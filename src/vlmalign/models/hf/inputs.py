"""The inputs of an `hf:` model's forward pass: processor batches of left-padded prompts, token
continuations appended to them, image and position bookkeeping, and the forward pass that
projects only the positions a loss or a score reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlmalign.models.decoding import takes_argument
from vlmalign.models.hf.prompts import Prompter
from vlmalign.models.tokens import IGNORE

# token_type_ids of answer tokens: PaliGemma marks the generated suffix with 1 (causal
# attention); elsewhere 0 means text.
ANSWER_TOKEN_TYPE = {"paligemma": 1}
# Where a model counts positions from, if not 0 (as its own generate() counts them).
FIRST_POSITION = {"paligemma": 1}
# Inputs with one value per token, which grow when a continuation is appended.
PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


def _overrides_position_ids(model: Any) -> bool:
    """True for models with their own position scheme (Qwen2-VL's 3-D rotary positions)."""
    from transformers import GenerationMixin

    own = getattr(type(model), "_prepare_position_ids_for_generation", None)
    return own is not None and own is not GenerationMixin._prepare_position_ids_for_generation


class HFInputs:
    """Mixin of `HFVisionModel`: building its inputs and running its scored forward pass.

    `HFVisionModel.__init__` sets the attributes annotated here.
    """

    hf: Any
    processor: Any
    tokenizer: Any
    prompter: Prompter
    image_token_id: int | None
    encoder_calls: int
    _own_positions: bool
    _plain_positions: bool
    _first_position: int
    _answer_token_type: int

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    def _image_token_id(self) -> int | None:
        token_id = getattr(self.processor, "image_token_id", None)
        if isinstance(token_id, int):
            return token_id
        token = getattr(self.processor, "image_token", None)
        return self.tokenizer.convert_tokens_to_ids(token) if token else None

    def _encode(self, images: Sequence[Any], texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Processor inputs of left-padded prompts, one image each."""
        batch = self.processor(
            text=[self.prompter.model_text(t) for t in texts],
            images=[[image.convert("RGB")] for image in images],
            padding=True,
            return_tensors="pt",
        )
        batch.pop("labels", None)  # PaliGemma's processor adds them; we build our own
        self.encoder_calls += len(images)
        dtype = self.hf.dtype  # pixels in the weights' precision (bf16 on GPU)
        return {
            k: v.to(self.device, dtype=dtype if v.is_floating_point() else v.dtype)
            if torch.is_tensor(v)
            else v
            for k, v in batch.items()
        }

    def _with_continuations(
        self, inputs: dict[str, torch.Tensor], continuations: Sequence[Sequence[int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Append token ids to each prompt and re-pad on the left; returns the new inputs and a
        mask of the appended positions. Per-token inputs (masks, token types) grow alongside."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        keys = [k for k in PER_TOKEN_INPUTS if k in inputs]
        real = [mask[i].bool() for i in range(len(ids))]
        length = max(int(r.sum()) + len(c) for r, c in zip(real, continuations, strict=True))
        appended_value = {"attention_mask": 1, "token_type_ids": self._answer_token_type}
        padding = {"input_ids": self.tokenizer.pad_token_id}
        out = {k: ids.new_full((len(ids), length), padding.get(k, 0)) for k in keys}
        appended = torch.zeros((len(ids), length), dtype=torch.bool, device=ids.device)
        for i, tail in enumerate(continuations):
            tail_ids = torch.tensor(list(tail), dtype=ids.dtype, device=ids.device)
            for key in keys:
                prompt = inputs[key][i][real[i]]
                extra = (
                    tail_ids
                    if key == "input_ids"
                    else torch.full_like(tail_ids, appended_value.get(key, 0))
                )
                row = torch.cat([prompt, extra.to(prompt.dtype)])
                out[key][i, length - len(row) :] = row
            if tail:
                appended[i, length - len(tail) :] = True
        return {**inputs, **out}, appended

    def _token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _image_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """The image's tokens in each row: from its first to its last placeholder token, and the
        special tokens around them (Qwen's vision start/end, Idefics3's image wrappers)."""
        found = torch.zeros_like(ids, dtype=torch.bool)
        if self.image_token_id is None:
            return found
        special = torch.tensor(sorted(self.tokenizer.all_special_ids), device=ids.device)
        for i, row in enumerate(ids):
            where = (row == self.image_token_id).nonzero()[:, 0]
            if not len(where):
                continue
            start, end = int(where[0]), int(where[-1])
            while start > 0 and bool(torch.isin(row[start - 1], special)):
                start -= 1
            while end + 1 < len(row) and bool(torch.isin(row[end + 1], special)):
                end += 1
            found[i, start : end + 1] = True
        return found

    def _plain_position_ids(self, mask: torch.Tensor) -> torch.Tensor:
        """Left padding: count positions from each row's first token."""
        return (mask.cumsum(-1) - 1).clamp(min=0) + self._first_position

    def _position_ids(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The positions of a prompt batch, as the model's own generate() sets them; None where
        the model's forward counts them itself (its rows must then not be padded)."""
        if self._plain_positions:
            return self._plain_position_ids(inputs["attention_mask"])
        if self._own_positions:  # e.g. Qwen2-VL's multimodal rotary positions
            positions = self.hf._prepare_position_ids_for_generation(
                inputs["input_ids"], dict(inputs)
            )
            return positions
        return None

    def _logits_at(self, inputs: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """Logits at the `keep` positions only, flattened row by row. The vocabulary projection
        is the largest activation and scoring needs few positions (the answers, at the end of
        left-padded rows), so only the positions some row keeps are projected."""
        kwargs = dict(inputs)
        if self._plain_positions:
            kwargs["position_ids"] = self._plain_position_ids(inputs["attention_mask"])
        if not takes_argument(self.hf, "logits_to_keep"):
            return self.hf(**kwargs, use_cache=False).logits[keep]
        columns = keep.any(0).nonzero()[:, 0]  # a 1-D index: what transformers >= 4.56 takes
        logits = self.hf(**kwargs, use_cache=False, logits_to_keep=columns).logits
        return logits[keep[:, columns]]

    def _scored(
        self, inputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probabilities of the labelled tokens, their row index, the logits)."""
        targets = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != IGNORE
        logits = self._logits_at(inputs, keep).float()
        picked = targets[keep[:, :-1]]
        logprobs = logits.log_softmax(-1).gather(-1, picked[:, None])[:, 0]
        return logprobs, keep.nonzero()[:, 0], logits
