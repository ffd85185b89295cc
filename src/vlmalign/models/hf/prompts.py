"""Prompts of an `hf:` model: our stored prompts (IMAGE_TOKEN inside) rendered through the
processor's chat template, or as MAGMA-style text where it has none, and back to the text the
processor takes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vlmalign.errors import ModelError
from vlmalign.prompts import IMAGE_TOKEN, Prompt, PromptFormat, ShotsAs

_PROBE = "vlmalign probe"


def chat_conversation(messages: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Our text messages (IMAGE_TOKEN inside) -> processor messages with typed content parts."""
    conversation = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        pieces = message["content"].split(IMAGE_TOKEN)
        for index, piece in enumerate(pieces):
            if index:
                parts.append({"type": "image"})
            if piece:
                parts.append({"type": "text", "text": piece})
        conversation.append({"role": message["role"], "content": parts})
    return conversation


class Prompter:
    """Renders prompts for one processor and turns stored prompts into the text it expects.

    Stored prompts mark the image with IMAGE_TOKEN; the model sees, in its place, what its chat
    template writes for an image (found by rendering a probe with and without one), or the
    processor's image token where there is no chat template (PaliGemma).
    """

    def __init__(self, processor: Any, name: str) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.has_chat_template = getattr(processor, "chat_template", None) is not None
        self.image_text = self._template_image_text() if self.has_chat_template else ""
        self.image_text = self.image_text or str(getattr(processor, "image_token", "") or "")
        if not self.image_text:
            raise ModelError(f"{name}: the processor has no image token and no chat template")
        self.default_prompt_format: PromptFormat = "chat" if self.has_chat_template else "magma"
        # Chat answers follow the generation prompt; most end with a newline, some with "X:".
        probe = self._chat([{"role": "user", "content": _PROBE}]) if self.has_chat_template else ""
        self.chat_answer_prefix = "" if not probe or probe[-1].isspace() else " "
        self._strip_bos = self._tokenizer_adds_bos()

    def _chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        text = self.processor.apply_chat_template(
            chat_conversation(messages), add_generation_prompt=True, tokenize=False
        )
        return str(text)

    def _template_image_text(self) -> str:
        with_image = self._chat([{"role": "user", "content": IMAGE_TOKEN + _PROBE}])
        without = self._chat([{"role": "user", "content": _PROBE}])
        start = 0
        while start < min(len(with_image), len(without)) and with_image[start] == without[start]:
            start += 1
        end = 0
        while end < len(without) - start and with_image[-1 - end] == without[-1 - end]:
            end += 1
        return with_image[start : len(with_image) - end]

    def _tokenizer_adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return False
        ids = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] == bos

    def render(self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None) -> str:
        if prompt_format == "magma":
            return prompt.magma_text()
        if not self.has_chat_template:
            raise ValueError(f"model {self.name!r} has no chat template; use prompt format 'magma'")
        text = self._chat(prompt.chat_messages(shots_as or "inline"))
        if text.count(self.image_text) != 1:
            raise ValueError(f"model {self.name!r}: the rendered prompt must show the image once")
        return text.replace(self.image_text, IMAGE_TOKEN)

    def answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return self.chat_answer_prefix + answer if prompt_format == "chat" else " " + answer

    def model_text(self, prompt_text: str) -> str:
        """The stored prompt as the processor takes it (its tokenizer adds BOS itself)."""
        if prompt_text.count(IMAGE_TOKEN) != 1:
            raise ValueError("a prompt must mark the image exactly once")
        text = prompt_text.replace(IMAGE_TOKEN, self.image_text)
        bos = self.tokenizer.bos_token
        if self._strip_bos and bos and text.startswith(bos):
            text = text[len(bos) :]
        return text
