"""`openai:<model>`: any model behind an OpenAI-compatible chat endpoint (hosted APIs, `vllm
serve`, SGLang, Ollama, llama.cpp, LM Studio), as the studied model.

A prompt goes as chat messages: the image a base64 PNG data URL in an `image_url` part where the
prompt places it, shots as the configured `shots_as` (or MAGMA's text in one user turn).
Sampling sends `temperature`, `top_p`, `max_tokens` and each request's `seed`; a prompt's
samples go as one request with `n` where the endpoint gives them (else one request each);
`top_k` only to endpoints that take it. Each response comes back with its finish reason, token
usage, the endpoint's model name and `system_fingerprint`; a content-filter refusal comes back
as a response marked refused (data for an alignment study, not an error). docs/models.md.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlmalign.errors import ModelError
from vlmalign.models.base import Generated, GenerationRequest, Model
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.models.openai_client import EndpointClient, chat_completion
from vlmalign.prompts import (
    IMAGE_TOKEN,
    PromptFormat,
    prompt_messages,
)
from vlmalign.sampling import SamplingParams

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion
    from PIL import Image

log = logging.getLogger(__name__)

PREFIX = "openai:"
TOP_K_SERVERS = ("vllm", "sglang")  # servers whose chat endpoint takes `top_k`
FILTERED = "content_filter"
IMAGES_KEPT = 256  # encoded images kept by image key (a dataset's images, usually all)


@dataclass(frozen=True)
class ChatJob:
    """One request: the indices of the requests it answers (a prompt's samples under `n`)."""

    indices: tuple[int, ...]
    messages: list[dict[str, Any]]
    seeds: tuple[int, ...]  # each index's own; an `n` request carries the first
    what: str  # names it in an error: the item, shots and sample


FILE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def image_url(image: Image.Image, max_side: int | None, file: bytes | None = None) -> str:
    """The image as a base64 data URL: a PNG or JPEG file as it is, when it needs no
    downscaling to `max_side`; else the pixels (downscaled first) as PNG."""
    from PIL import Image as PILImage

    small_enough = max_side is None or max(image.size) <= max_side
    for magic, mime in FILE_TYPES.items():
        if file and small_enough and file.startswith(magic):
            return f"data:{mime};base64," + base64.b64encode(file).decode("ascii")
    if not small_enough:
        assert max_side is not None
        image = image.copy()
        image.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def content_parts(text: str, url: str) -> list[dict[str, Any]]:
    """A turn's text as content parts, the image where IMAGE_TOKEN marks it."""
    parts: list[dict[str, Any]] = []
    for position, piece in enumerate(text.split(IMAGE_TOKEN)):
        if position:
            parts.append({"type": "image_url", "image_url": {"url": url}})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def chat_messages(turns: Sequence[dict[str, str]], url: str) -> list[dict[str, Any]]:
    """Turns as the API's messages: a user turn's image as an `image_url` part."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn["role"] == "user" and IMAGE_TOKEN in turn["content"]:
            messages.append({"role": "user", "content": content_parts(turn["content"], url)})
        else:
            messages.append({"role": turn["role"], "content": turn["content"]})
    return messages


def describe(request: GenerationRequest) -> str:
    """A request as an error names it."""
    if request.item is None:
        return "the request"
    shots = "" if request.shots is None else f" {request.shots}-shot"
    return f"item {request.item.id!r} ({request.item.split or 'test'}{shots})"


class OpenAIChatModel(Model):
    """A Generator (and StreamsGenerations) over an OpenAI-compatible chat endpoint."""

    default_prompt_format: PromptFormat = "chat"

    def __init__(self, model: str, settings: EndpointSettings | None = None) -> None:
        self.settings = settings or EndpointSettings()
        self.endpoint_model = model
        self.name = PREFIX + model
        side = self.settings.max_image_side
        # What the model sees: a downscaled image is another input.
        self._fingerprint = self.name if side is None else f"{self.name}@{side}px"
        self.client = EndpointClient(self.settings, self.name)
        self.use_n = self.settings.use_n
        self.accepts_top_k = self.settings.accepts_top_k
        self._images: dict[str, str] = {}

    # --- requests ------------------------------------------------------------------------
    def _url(self, request: GenerationRequest) -> str:
        key = request.image_key
        if key is not None and key in self._images:
            return self._images[key]
        url = image_url(request.image, self.settings.max_image_side, request.image_file)
        if key is not None:
            if len(self._images) >= IMAGES_KEPT:
                self._images.pop(next(iter(self._images)))
            self._images[key] = url
        return url

    def _messages(self, request: GenerationRequest) -> list[dict[str, Any]]:
        url = self._url(request)
        if request.prompt is not None:
            turns = prompt_messages(
                request.prompt, request.prompt_format or "chat", request.shots_as
            )
        else:  # a prompt known only as text: one user turn
            turns = [{"role": "user", "content": request.prompt_text}]
        return chat_messages(turns, url)

    def _jobs(self, requests: Sequence[GenerationRequest]) -> list[ChatJob]:
        """One job per request, or under `n` one per prompt with all its samples."""
        groups: dict[tuple[str, str] | int, list[int]] = {}
        for index, request in enumerate(requests):
            # The same image (by key, else the same object) and text: one prompt.
            image = request.image_key or str(id(request.image))
            group = (image, request.prompt_text) if self.use_n else index
            groups.setdefault(group, []).append(index)
        return [
            ChatJob(
                tuple(indices),
                self._messages(requests[indices[0]]),
                tuple(requests[index].seed for index in indices),
                describe(requests[indices[0]]),
            )
            for indices in groups.values()
        ]

    def _check_top_k(self, params: SamplingParams) -> None:
        if params.top_k == 0:
            return
        if self.accepts_top_k is None:
            owner = self.client.owned_by(self.endpoint_model)
            self.accepts_top_k = owner in TOP_K_SERVERS
        if not self.accepts_top_k:
            raise ModelError(
                f"sampling.top_k {params.top_k}: the endpoint at {self.client.url} does not take "
                "top_k (vLLM and SGLang do); set it to 0, or api.accepts_top_k: true if it does"
            )

    def _arguments(self, params: SamplingParams, job: ChatJob, n: int, seed: int) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": self.endpoint_model,
            "messages": job.messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
        }
        if n > 1:
            arguments["n"] = n
        if params.top_k:  # vLLM's and SGLang's own parameter (checked: `_check_top_k`)
            arguments["top_k"] = params.top_k
        return arguments

    async def _ask(
        self, client: AsyncOpenAI, job: ChatJob, params: SamplingParams
    ) -> list[Generated]:
        """The job's responses, one per index; samples an endpoint leaves out of an `n`
        request are asked one at a time (and `n` is not used again)."""
        answers = await self._request(client, job, params, len(job.indices), job.seeds[0])
        while len(answers) < len(job.indices):
            if self.use_n:
                log.warning(
                    "%s gave %d of %d samples asked with n: asking each sample alone from now on",
                    self.name,
                    len(answers),
                    len(job.indices),
                )
                self.use_n = False
            answers += await self._request(client, job, params, 1, job.seeds[len(answers)])
        return answers[: len(job.indices)]

    async def _request(
        self, client: AsyncOpenAI, job: ChatJob, params: SamplingParams, n: int, seed: int
    ) -> list[Generated]:
        import openai

        try:
            completion = await chat_completion(client, self._arguments(params, job, n, seed))
        except openai.BadRequestError as exc:
            if exc.code != FILTERED:
                raise
            # Azure and others refuse a filtered prompt with a 400: the refusal is the answer.
            return [Generated("", FILTERED, 0, 0, refused=True) for _ in range(n)]
        return generated(completion)

    def generate_each(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[list[tuple[int, Generated]]]:
        self._check_top_k(params)
        jobs = self._jobs(requests)

        async def ask(client: AsyncOpenAI, job: ChatJob) -> list[Generated]:
            return await self._ask(client, job, params)

        for group in self.client.each(jobs, ask, lambda job: job.what):
            yield [
                pair
                for job_index, answers in group
                for pair in zip(jobs[job_index].indices, answers, strict=True)
            ]

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        texts = {
            i: answer.text for group in self.generate_each(requests, params) for i, answer in group
        }
        return [texts[index] for index in range(len(requests))]


def generated(completion: ChatCompletion) -> list[Generated]:
    """A completion's choices as responses; the request's usage goes with the first."""
    usage = completion.usage
    answers = []
    for position, choice in enumerate(sorted(completion.choices, key=lambda c: c.index)):
        message = choice.message
        refusal = getattr(message, "refusal", None)
        text = message.content or refusal or ""
        first = position == 0
        answers.append(
            Generated(
                text,
                choice.finish_reason,
                (usage.prompt_tokens if first else 0) if usage else None,
                (usage.completion_tokens if first else 0) if usage else None,
                completion.model,
                completion.system_fingerprint,
                refused=choice.finish_reason == FILTERED or refusal is not None,
            )
        )
    return answers


def load_openai_model(argument: str, settings: EndpointSettings | None) -> OpenAIChatModel:
    if not argument.strip():
        raise ModelError("openai: name the endpoint's model, e.g. openai:gpt-4o")
    return OpenAIChatModel(argument, settings)
