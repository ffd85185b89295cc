"""A local OpenAI-compatible chat server with scripted answers and deterministic faults.

It stands in for OpenAI, vLLM or SGLang when tests and benchmarks exercise an OpenAI client:
every request is checked strictly against the `openai` package's own request types (unknown
top-level keys and images that are not real PNG/JPEG data URLs are refused, and recorded), the
answers come from a `reply` callable, and rate limits, server errors, dropped connections, slow
answers, content filtering and wrong keys are injected by request number. It imports nothing from
vlmalign, so it cannot share a bug with the client it checks. The HTTP/1.1 layer is plain asyncio
(not uvicorn) so that a fault such as closing a connection mid-request is exactly what happens.

In-process, as a context manager (the server runs on its own thread and event loop):

    with LocalEndpoint(reply=lambda request, index: Reply("Yes."), key="sk-local",
                       faults=Faults(rate_limit_every=3)) as endpoint:
        client = openai.OpenAI(base_url=endpoint.base_url, api_key="sk-local")
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
        print(endpoint.stats.snapshot())

As a process (prints one `READY <base url>` line once listening; stops on SIGTERM/SIGINT):

    python -m benchmarks.openai_server --port 0 --latency 0.05 --key sk-local
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

from openai.types.chat import ChatCompletion, ChatCompletionMessage, ChatCompletionTokenLogprob
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
from openai.types.chat.chat_completion_token_logprob import TopLogprob
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.completion_usage import CompletionUsage
from PIL import Image
from pydantic import TypeAdapter, ValidationError

__all__ = [
    "ChatRequest",
    "Faults",
    "LocalEndpoint",
    "OpenAIServer",
    "Reply",
    "Stats",
    "default_reply",
    "main",
]

FilterMode = Literal["finish_reason", "error"]

# Built once: the adapter compiles the whole request schema.
_REQUEST_ADAPTER: TypeAdapter[CompletionCreateParamsNonStreaming] = TypeAdapter(
    CompletionCreateParamsNonStreaming
)
# Pydantic ignores unknown keys of a TypedDict, so the top level is checked against this set;
# the required/optional key sets already include the TypedDict's bases.
_KNOWN_KEYS = frozenset(
    CompletionCreateParamsNonStreaming.__required_keys__
    | CompletionCreateParamsNonStreaming.__optional_keys__
)
_DATA_URL = re.compile(r"data:image/(png|jpeg);base64,(.*)", re.DOTALL)
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG"}
_TOKEN = re.compile(r"\s*\S+")
TOKENS_PER_IMAGE = 85
_MAX_TOP_LOGPROBS = 20  # OpenAI's own bound
_MAX_HEAD_BYTES = 64 * 1024
_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering content management policy."
)


@dataclass(frozen=True)
class ChatRequest:
    """What a `reply` callable sees of one valid chat request."""

    body: dict[str, Any]  # the JSON body as sent
    model: str
    text: str  # every message's text parts, joined with "\n"
    last_user_text: str
    images: list[bytes]  # decoded image bytes, in message order
    n: int
    seed: int | None
    logprobs: bool
    top_logprobs: int | None
    sequence: int  # 1-based number among all chat requests received


@dataclass(frozen=True)
class Reply:
    """One choice's answer; `top_logprobs` are the alternatives for the first token."""

    text: str
    finish_reason: str = "stop"
    refusal: str | None = None
    top_logprobs: list[tuple[str, float]] | None = None


ReplyFunction = Callable[[ChatRequest, int], Reply]


def default_reply(request: ChatRequest, index: int) -> Reply:
    """The answer when no `reply` is given."""
    return Reply("No.")


@dataclass(frozen=True)
class Faults:
    """Faults injected by chat request sequence number; 0 (or empty) turns one off.

    A fault with period k hits requests 1, k+1, 2k+1, …: the first request is always hit, so a
    single client call shows both the fault and the retry that follows it (with k >= 2). Where
    several periods select the same request, the first in check order wins: drop, rate limit,
    server error, fail phrase (the content filter comes after these). `slow` adds to whatever
    the request gets.
    """

    rate_limit_every: int = 0  # 429 with Retry-After
    retry_after: str = "0"  # the Retry-After header's value, as sent
    server_error_every: int = 0  # 500
    drop_every: int = 0  # read the request, close the connection without a response
    slow_every: int = 0  # wait slow_s longer before responding
    slow_s: float = 0.0
    fail_phrases: tuple[str, ...] = ()  # a request whose text has one always gets 500


def _hits(sequence: int, every: int) -> bool:
    return every > 0 and (sequence - 1) % every == 0


class Stats:
    """Counters of what the server saw, updated on its loop and read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = 0  # authorized chat requests (each gets the next sequence number)
        self.answered = 0  # 200s with choices, content-filter 200s included
        self.choices_answered = 0
        self.faults: Counter[str] = Counter()
        self.invalid: list[str] = []
        self.unauthorized = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered_texts: list[str] = []  # last_user_text of each answered request
        self.errors: list[str] = []  # exceptions raised by the reply callable

    def _arrive(self) -> int:
        with self._lock:
            self.received += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.received

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _refuse(self, reason: str) -> None:
        with self._lock:
            self.invalid.append(reason)

    def _deny(self) -> None:
        with self._lock:
            self.unauthorized += 1

    def _error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _answer(self, choices: int, last_user_text: str) -> None:
        with self._lock:
            self.answered += 1
            self.choices_answered += choices
            self.answered_texts.append(last_user_text)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy as plain JSON-able values."""
        with self._lock:
            return {
                "received": self.received,
                "answered": self.answered,
                "choices_answered": self.choices_answered,
                "faults": dict(self.faults),
                "invalid": list(self.invalid),
                "unauthorized": self.unauthorized,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "answered_texts": list(self.answered_texts),
                "errors": list(self.errors),
            }


# --- HTTP/1.1 ------------------------------------------------------------------------------


class _HttpError(Exception):
    """A request the HTTP layer cannot read; answered with `status` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, keep_alive: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        # One write per response: with TCP_NODELAY (asyncio's default) that is one segment.
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _HttpError(400, "bad chunk size") from None
        if size == 0:
            break
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _HttpError(400, "chunk not followed by CRLF")
    while (await reader.readline()).strip():  # trailers, up to the blank line
        pass
    return b"".join(parts)


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _HttpRequest | None:
    """The next request on a connection, or None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            return None
        raise _HttpError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise _HttpError(431, "request head too large") from None
    request_line, *header_lines = head.decode("latin-1").strip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, f"bad request line: {request_line!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise _HttpError(400, f"bad header line: {line!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _HttpError(400, "bad Content-Length") from None
        body = await reader.readexactly(length)
    else:
        body = b""
    return _HttpRequest(method, target.split("?", 1)[0], headers, body, keep_alive)


def _error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> _Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return _Response(status, json.dumps(body).encode(), headers or {})


# --- request checks ------------------------------------------------------------------------


class _Invalid(Exception):
    """A chat request to refuse with 400; the message is the reason."""


def _materialize(value: Any, path: str) -> Any:
    # The request types declare `Iterable[...]`, which pydantic validates lazily as it is
    # iterated; walking everything makes every nested error surface now. An iterator's errors
    # are located relative to itself, so `path` says where it sits in the body.
    if isinstance(value, dict):
        return {key: _materialize(item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, list | tuple):
        return [_materialize(item, f"{path}.{index}") for index, item in enumerate(value)]
    if isinstance(value, Iterator):
        items = []
        try:
            for index, item in enumerate(value):
                items.append(_materialize(item, f"{path}.{index}"))
        except ValidationError as error:
            raise _Invalid(_describe(error, path)) from None
        return items
    return value


def _describe(error: ValidationError, path: str = "") -> str:
    problems = [
        ".".join([path, *(str(part) for part in item["loc"])]).strip(".") + f": {item['msg']}"
        for item in error.errors()[:3]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _text_parts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if part.get("type") == "text"]
    return []  # None (assistant messages with tool calls only)


def _image_urls(messages: list[dict[str, Any]]) -> Iterator[str]:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url":
                    yield part["image_url"]["url"]


class _ImageChecker:
    """Decodes data URLs and checks that PIL reads the bytes as the declared format."""

    def __init__(self, remembered: int = 4096) -> None:
        # Benchmarks send the same images many times: a digest that passed once is not decoded
        # again, which keeps the server fast enough to not be the bottleneck.
        self._passed: set[bytes] = set()
        self._remembered = remembered

    def decode(self, url: str) -> bytes:
        match = _DATA_URL.fullmatch(url)
        if match is None:
            shown = url if len(url) <= 40 else url[:40] + "…"
            raise _Invalid(
                f"image_url must be a data:image/png or data:image/jpeg base64 URL, got {shown!r}"
            )
        kind, payload = match.groups()
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid(f"image_url: invalid base64 in a {kind} data URL") from None
        digest = hashlib.blake2b(kind.encode() + data, digest_size=16).digest()
        if digest in self._passed:
            return data
        expected = _PIL_FORMAT[kind]
        try:
            with Image.open(io.BytesIO(data)) as image:
                found = image.format
                image.load()  # a truncated or corrupt image fails here, not at open
        except Exception as error:
            raise _Invalid(
                f"image_url: the {kind} data does not open as an image: {error}"
            ) from None
        if found != expected:
            raise _Invalid(f"image_url: declared image/{kind} but the data is {found}")
        if len(self._passed) >= self._remembered:
            self._passed.clear()
        self._passed.add(digest)
        return data


def _top_level_check(body: Any, extra_params: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Invalid("the request body must be a JSON object")
    unknown = sorted(set(body) - _KNOWN_KEYS - extra_params)
    if unknown:
        raise _Invalid(f"unrecognized request argument supplied: {', '.join(unknown)}")
    return body


def _parse_chat(
    raw: bytes, sequence: int, extra_params: frozenset[str], images: _ImageChecker
) -> ChatRequest:
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Invalid(f"could not parse the JSON body: {error}") from None
    body = _top_level_check(parsed, extra_params)
    # The extra parameters are vLLM/SGLang's, not OpenAI's: the types cannot check them.
    typed = {key: value for key, value in body.items() if key not in extra_params}
    try:
        validated = _REQUEST_ADAPTER.validate_python(typed)
    except ValidationError as error:
        raise _Invalid(_describe(error)) from None
    checked: dict[str, Any] = {key: _materialize(value, key) for key, value in validated.items()}
    messages: list[dict[str, Any]] = checked["messages"]
    if not messages:
        raise _Invalid("messages: must hold at least one message")
    n = checked.get("n")
    n = 1 if n is None else n  # null, like absent, means one choice
    if n < 1:
        raise _Invalid("n: must be at least 1")
    logprobs = bool(checked.get("logprobs"))
    top_logprobs = checked.get("top_logprobs")
    if top_logprobs is not None:
        if not logprobs:
            raise _Invalid("top_logprobs: requires logprobs to be true")
        if not 0 <= top_logprobs <= _MAX_TOP_LOGPROBS:
            raise _Invalid(f"top_logprobs: must be between 0 and {_MAX_TOP_LOGPROBS}")
    decoded = [images.decode(url) for url in _image_urls(messages)]
    texts = [text for message in messages for text in _text_parts(message.get("content"))]
    user_messages = [message for message in messages if message["role"] == "user"]
    last_user_text = (
        "\n".join(_text_parts(user_messages[-1].get("content"))) if user_messages else ""
    )
    return ChatRequest(
        body=body,
        model=checked["model"],
        text="\n".join(texts),
        last_user_text=last_user_text,
        images=decoded,
        n=n,
        seed=checked.get("seed"),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        sequence=sequence,
    )


# --- answers -------------------------------------------------------------------------------


def _token_logprobs(reply: Reply, count: int) -> list[ChatCompletionTokenLogprob]:
    tokens = _TOKEN.findall(reply.text)
    entries = []
    for position, token in enumerate(tokens):
        alternatives = [(token, 0.0)]
        if position == 0 and reply.top_logprobs is not None:
            alternatives = list(reply.top_logprobs)
        # The chosen token's own logprob agrees with its entry among the alternatives (which
        # may be written without the token's leading space).
        listed = dict(alternatives)
        own = listed.get(token, listed.get(token.strip(), 0.0))
        entries.append(
            ChatCompletionTokenLogprob(
                token=token,
                bytes=list(token.encode()),
                logprob=own,
                top_logprobs=[
                    TopLogprob(token=alt, bytes=list(alt.encode()), logprob=value)
                    for alt, value in alternatives[:count]
                ],
            )
        )
    return entries


def _completion(
    request: ChatRequest,
    replies: list[Reply],
    served_model: str,
    system_fingerprint: str,
) -> _Response:
    choices = [
        Choice(
            index=index,
            finish_reason=reply.finish_reason,  # pydantic checks it is one of OpenAI's
            message=ChatCompletionMessage(
                role="assistant", content=reply.text, refusal=reply.refusal
            ),
            logprobs=(
                ChoiceLogprobs(content=_token_logprobs(reply, request.top_logprobs or 0))
                if request.logprobs
                else None
            ),
        )
        for index, reply in enumerate(replies)
    ]
    prompt_tokens = len(request.text.split()) + TOKENS_PER_IMAGE * len(request.images)
    completion_tokens = sum(len(reply.text.split()) for reply in replies)
    completion = ChatCompletion(
        id=f"chatcmpl-local-{request.sequence}",
        object="chat.completion",
        created=int(time.time()),
        model=served_model,
        system_fingerprint=system_fingerprint,
        choices=choices,
        usage=CompletionUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )
    body = completion.model_dump_json(exclude_none=True).encode()
    return _Response(200, body, {"x-request-id": f"req_local_{request.sequence}"})


# --- the server ----------------------------------------------------------------------------


class OpenAIServer:
    """The asyncio server itself; `LocalEndpoint` runs one on a thread, `main` in a process."""

    def __init__(
        self,
        *,
        reply: ReplyFunction = default_reply,
        model: str = "local-model",
        served_model: str | None = None,
        key: str | None = None,
        owned_by: str = "test",
        extra_params: Iterable[str] = (),
        faults: Faults | None = None,
        latency_s: float = 0.0,
        filter_phrases: tuple[str, ...] = (),
        filter_mode: FilterMode = "finish_reason",
        system_fingerprint: str = "fp_local",
        max_choices: int | None = None,
    ) -> None:
        if filter_mode not in ("finish_reason", "error"):
            raise ValueError(f"filter_mode must be 'finish_reason' or 'error', not {filter_mode!r}")
        self.reply = reply
        self.model = model
        self.served_model = served_model
        self.key = key
        self.owned_by = owned_by
        self.extra_params = frozenset(extra_params)
        self.faults = faults or Faults()
        self.latency_s = latency_s
        self.filter_phrases = tuple(filter_phrases)
        self.filter_mode = filter_mode
        self.system_fingerprint = system_fingerprint
        # At most this many choices whatever `n` asks, as servers that ignore `n` (Ollama) do.
        self.max_choices = max_choices
        self.stats = Stats()
        self._images = _ImageChecker()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=_MAX_HEAD_BYTES, backlog=1024
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Keep-alive connections would otherwise outlive the server (and its loop).
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader, writer)
                except _HttpError as error:
                    writer.write(_error(error.status, str(error)).encode(keep_alive=False))
                    await writer.drain()
                    return
                if request is None:
                    return
                response = await self._route(request)
                if response is None:  # the drop fault: no response at all
                    return
                writer.write(response.encode(request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away mid-request; nothing to answer
        except asyncio.CancelledError:
            # Only `close` cancels these tasks; ending normally keeps Python 3.11's stream
            # callback from logging the cancellation as an error.
            return
        finally:
            self._connections.discard(task)
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()

    def _authorized(self, request: _HttpRequest) -> _Response | None:
        """None when the key is right, else the 401 (echoing the key, as OpenAI does)."""
        if self.key is None:
            return None
        sent = request.headers.get("authorization", "")
        if sent == f"Bearer {self.key}":
            return None
        self.stats._deny()
        shown = sent.removeprefix("Bearer ").strip()
        return _error(401, f"Incorrect API key provided: {shown}", code="invalid_api_key")

    async def _route(self, request: _HttpRequest) -> _Response | None:
        route = (request.method, request.path.rstrip("/"))
        if route not in {("POST", "/v1/chat/completions"), ("GET", "/v1/models")}:
            return _error(404, f"Invalid URL ({request.method} {request.path})", code="unknown_url")
        denied = self._authorized(request)
        if denied is not None:
            return denied
        if route == ("GET", "/v1/models"):
            return self._models()
        sequence = self.stats._arrive()
        try:
            return await self._chat(request.body, sequence)
        finally:
            self.stats._leave()

    def _models(self) -> _Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": self.owned_by}
        return _Response(200, json.dumps({"object": "list", "data": [model]}).encode())

    async def _chat(self, raw: bytes, sequence: int) -> _Response | None:
        faults = self.faults
        if _hits(sequence, faults.drop_every):
            self.stats._fault("drop")
            return None
        delay = self.latency_s
        if _hits(sequence, faults.slow_every):
            self.stats._fault("slow")
            delay += faults.slow_s
        if delay > 0:
            await asyncio.sleep(delay)
        # Validation comes before the other faults so that a bad request is always reported.
        try:
            chat = _parse_chat(raw, sequence, self.extra_params, self._images)
        except _Invalid as invalid:
            self.stats._refuse(str(invalid))
            return _error(400, str(invalid))
        if _hits(sequence, faults.rate_limit_every):
            self.stats._fault("rate_limit")
            return _error(
                429,
                "Rate limit reached for requests (local test server).",
                "rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": faults.retry_after},
            )
        if _hits(sequence, faults.server_error_every):
            self.stats._fault("server_error")
            return _error(500, "The server had an error processing your request.", "server_error")
        if any(phrase in chat.text for phrase in faults.fail_phrases):
            self.stats._fault("fail")
            return _error(500, "The server always fails on this request.", "server_error")
        served = self.served_model or f"{chat.model}-served"
        if any(phrase in chat.text for phrase in self.filter_phrases):
            self.stats._fault("filter")
            if self.filter_mode == "error":
                return _error(400, _FILTER_MESSAGE, param="prompt", code="content_filter")
            filtered = [Reply("", finish_reason="content_filter")] * chat.n
            self.stats._answer(chat.n, chat.last_user_text)
            return _completion(chat, filtered, served, self.system_fingerprint)
        choices = min(chat.n, self.max_choices or chat.n)
        try:
            replies = [self.reply(chat, index) for index in range(choices)]
            response = _completion(chat, replies, served, self.system_fingerprint)
        except Exception as error:
            # A bug in the test's reply (or a bad finish_reason): shown in stats and to the client.
            message = f"reply failed: {type(error).__name__}: {error}"
            self.stats._error(message)
            return _error(500, message, "server_error")
        self.stats._answer(choices, chat.last_user_text)
        return response


class LocalEndpoint:
    """An `OpenAIServer` on its own thread and event loop, started and stopped by `with`.

    Keyword arguments are `OpenAIServer`'s plus `host` and `port` (0: the OS picks one).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **server: Any) -> None:
        self.server = OpenAIServer(**server)  # reply, model, key, faults, latency_s, ...
        self.host = host
        self._requested_port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> Stats:
        return self.server.stats

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalEndpoint:
        self._thread = threading.Thread(target=self._run, name="openai-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise RuntimeError("the local OpenAI server did not start") from self._failure
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.server.start(self.host, self._requested_port)
        self.port = self.server.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# --- as a process --------------------------------------------------------------------------


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.openai_server",
        description="A local OpenAI-compatible server answering every chat request 'No.'.",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--port", type=int, default=0, help="0: the OS picks a free port")
    parser.add_argument("--key", default=None, help="require this API key")
    parser.add_argument("--model", default="local-model", help="the model /v1/models lists")
    parser.add_argument("--owned-by", default="test", help="owned_by in /v1/models")
    return parser.parse_args(argv)


async def _serve_until_signalled(arguments: argparse.Namespace) -> None:
    server = OpenAIServer(
        model=arguments.model,
        key=arguments.key,
        owned_by=arguments.owned_by,
        latency_s=arguments.latency,
    )
    await server.start("127.0.0.1", arguments.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    # The parent waits for this exact line (and learns the port from it).
    print(f"READY http://127.0.0.1:{server.port}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve_until_signalled(_parse_arguments(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
