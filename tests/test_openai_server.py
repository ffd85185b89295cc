"""The local OpenAI-compatible server (benchmarks/openai_server.py), driven by the real `openai`
client over real sockets: answers, strict request checks, keys, faults and their retries,
content filtering, logprobs, concurrency, raw HTTP details and the process mode."""

from __future__ import annotations

import base64
import http.client
import io
import json
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from benchmarks.openai_server import ChatRequest, Faults, LocalEndpoint, Reply
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionContentPartParam,
    ChatCompletionUserMessageParam,
)
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-local-test"


def image_url(kind: str = "png", size: tuple[int, int] = (8, 8)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG" if kind == "png" else "JPEG")
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def user_message(text: str, url: str | None = None) -> ChatCompletionUserMessageParam:
    parts: list[ChatCompletionContentPartParam] = [{"type": "text", "text": text}]
    if url is not None:
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {"role": "user", "content": parts}


def client_for(endpoint: LocalEndpoint, max_retries: int = 0, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=endpoint.base_url, api_key=KEY, max_retries=max_retries, timeout=10, **options
    )


def ask(client: openai.OpenAI, text: str = "Is it wrong?", **options: Any) -> ChatCompletion:
    return client.chat.completions.create(model="m", messages=[user_message(text)], **options)


@pytest.fixture
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(key=KEY) as running:
        yield running


def test_answers_a_valid_request_with_an_image() -> None:
    seen: list[tuple[ChatRequest, int]] = []

    def reply(request: ChatRequest, index: int) -> Reply:
        seen.append((request, index))
        return Reply(f"Answer {index} here")

    url = image_url()
    messages: list[Any] = [
        {"role": "system", "content": "Answer briefly."},
        user_message("Is this picture acceptable?", url),
    ]
    with LocalEndpoint(reply=reply, key=KEY) as endpoint:
        raw = client_for(endpoint).chat.completions.with_raw_response.create(
            model="m", messages=messages, n=3, seed=7, temperature=1.0, max_tokens=16
        )
        stats = endpoint.stats.snapshot()
    # Strict validation of the wire JSON, not the client's lenient construction.
    completion = ChatCompletion.model_validate(json.loads(raw.http_response.text))
    assert [choice.message.content for choice in completion.choices] == [
        "Answer 0 here",
        "Answer 1 here",
        "Answer 2 here",
    ]
    assert completion.model == "m-served"
    assert completion.system_fingerprint == "fp_local"
    assert completion.usage is not None
    # "Answer briefly." + "Is this picture acceptable?" = 6 words, one image, 3 × 3 words out.
    assert completion.usage.prompt_tokens == 6 + 85
    assert completion.usage.completion_tokens == 9
    assert completion.usage.total_tokens == 6 + 85 + 9
    assert raw.http_response.headers["x-request-id"] == "req_local_1"

    request, _ = seen[0]
    assert [index for _, index in seen] == [0, 1, 2]
    assert request.model == "m"
    assert request.n == 3 and request.seed == 7 and request.sequence == 1
    assert request.text == "Answer briefly.\nIs this picture acceptable?"
    assert request.last_user_text == "Is this picture acceptable?"
    assert request.images == [base64.b64decode(url.split(",", 1)[1])]
    assert request.logprobs is False and request.top_logprobs is None
    assert stats["received"] == 1 and stats["answered"] == 1
    assert stats["choices_answered"] == 3
    assert stats["answered_texts"] == ["Is this picture acceptable?"]
    assert stats["invalid"] == [] and stats["faults"] == {}


def test_jpeg_images_and_string_content_are_accepted(endpoint: LocalEndpoint) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "An answer"},
        user_message("Second question", image_url("jpeg")),
    ]
    completion = client_for(endpoint).chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == "No."
    assert endpoint.stats.answered_texts == ["Second question"]


def test_an_unknown_top_level_key_is_refused(endpoint: LocalEndpoint) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client_for(endpoint), extra_body={"bogus_option": 1})
    assert raised.value.status_code == 400
    assert raised.value.type == "invalid_request_error"
    assert len(endpoint.stats.invalid) == 1
    assert "bogus_option" in endpoint.stats.invalid[0]
    assert endpoint.stats.answered == 0


@pytest.mark.parametrize("allowed", [False, True])
def test_top_k_is_accepted_only_as_an_extra_param(allowed: bool) -> None:
    extra = {"top_k"} if allowed else set()
    with LocalEndpoint(key=KEY, extra_params=extra) as endpoint:
        client = client_for(endpoint)
        if allowed:
            assert ask(client, extra_body={"top_k": 20}).choices[0].message.content == "No."
            assert endpoint.stats.invalid == []
        else:
            with pytest.raises(openai.BadRequestError):
                ask(client, extra_body={"top_k": 20})
            assert "top_k" in endpoint.stats.invalid[0]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("data:text/plain;base64,aGVsbG8=", "data:image/png or data:image/jpeg"),
        ("https://example.com/cat.png", "data:image/png or data:image/jpeg"),
        ("data:image/png;base64,not base64!", "invalid base64"),
        ("data:image/png;base64,aGVsbG8=", "does not open"),
        (image_url("jpeg").replace("image/jpeg", "image/png"), "the data is JPEG"),
    ],
)
def test_bad_image_urls_are_refused(endpoint: LocalEndpoint, url: str, reason: str) -> None:
    with pytest.raises(openai.BadRequestError):
        client_for(endpoint).chat.completions.create(
            model="m", messages=[user_message("Look", url)]
        )
    assert len(endpoint.stats.invalid) == 1
    assert reason in endpoint.stats.invalid[0]


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "bogus"}]}]}, "messages.0"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0"),
        ({"n": "many"}, "n:"),
        ({"n": 0}, "n: must be at least 1"),
        ({"top_logprobs": 2}, "requires logprobs"),
    ],
)
def test_requests_the_types_refuse_are_refused(
    endpoint: LocalEndpoint, options: dict[str, Any], reason: str
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [user_message("hi")], **options}
    with pytest.raises(openai.BadRequestError):
        client_for(endpoint).post("/chat/completions", cast_to=ChatCompletion, body=body)
    assert reason in endpoint.stats.invalid[0]


def test_a_wrong_key_gets_401_echoing_the_key_sent() -> None:
    with LocalEndpoint(key=KEY) as endpoint:
        client = openai.OpenAI(base_url=endpoint.base_url, api_key="sk-wrong-123", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as raised:
            ask(client)
        assert endpoint.stats.unauthorized == 1
        assert endpoint.stats.received == 0
    error = raised.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-wrong-123" in error.message


def test_models_lists_the_model_with_its_owner() -> None:
    with LocalEndpoint(key=KEY, model="served-name", owned_by="vllm") as endpoint:
        models = client_for(endpoint).models.list()
    assert [(model.id, model.owned_by, model.created) for model in models.data] == [
        ("served-name", "vllm", 0)
    ]


def test_rate_limit_then_success_on_retry() -> None:
    with LocalEndpoint(key=KEY, faults=Faults(rate_limit_every=2)) as endpoint:
        completion = ask(client_for(endpoint, max_retries=2), "Rate me")
        stats = endpoint.stats.snapshot()
    assert completion.choices[0].message.content == "No."
    assert stats["faults"] == {"rate_limit": 1}
    assert stats["received"] == 2 and stats["answered"] == 1
    assert stats["answered_texts"] == ["Rate me"]


def test_server_error_then_success_on_retry() -> None:
    with LocalEndpoint(key=KEY, faults=Faults(server_error_every=2)) as endpoint:
        completion = ask(client_for(endpoint, max_retries=2))
        stats = endpoint.stats.snapshot()
    assert completion.choices[0].message.content == "No."
    assert stats["faults"] == {"server_error": 1}
    assert stats["received"] == 2 and stats["answered"] == 1


def test_a_dropped_connection_is_retried() -> None:
    with LocalEndpoint(key=KEY, faults=Faults(drop_every=2)) as endpoint:
        client = client_for(endpoint, max_retries=2)
        # A warm keep-alive connection first, so the drop hits a reused connection too.
        assert ask(client).choices[0].message.content == "No."
        assert ask(client).choices[0].message.content == "No."
        stats = endpoint.stats.snapshot()
    # Requests 1 and 3 are dropped; 2 and 4 answer.
    assert stats["faults"] == {"drop": 2}
    assert stats["received"] == 4 and stats["answered"] == 2


def test_a_dropped_connection_without_retries_is_a_connection_error() -> None:
    with LocalEndpoint(key=KEY, faults=Faults(drop_every=1)) as endpoint:
        with pytest.raises(openai.APIConnectionError):
            ask(client_for(endpoint, max_retries=0))
        assert endpoint.stats.faults == {"drop": 1}


def test_a_fail_phrase_always_fails() -> None:
    with LocalEndpoint(key=KEY, faults=Faults(fail_phrases=("poison",))) as endpoint:
        client = client_for(endpoint, max_retries=1)
        with pytest.raises(openai.InternalServerError):
            ask(client, "This is poison.")
        assert ask(client, "This is fine.").choices[0].message.content == "No."
        stats = endpoint.stats.snapshot()
    assert stats["faults"] == {"fail": 2}
    assert stats["received"] == 3 and stats["answered_texts"] == ["This is fine."]


def test_a_slow_answer_times_out_and_the_retry_succeeds() -> None:
    with LocalEndpoint(key=KEY, faults=Faults(slow_every=2, slow_s=2.0)) as endpoint:
        client = openai.OpenAI(base_url=endpoint.base_url, api_key=KEY, max_retries=1, timeout=0.3)
        started = time.perf_counter()
        assert ask(client).choices[0].message.content == "No."
        elapsed = time.perf_counter() - started
        stats = endpoint.stats.snapshot()
    assert stats["faults"] == {"slow": 1}
    assert stats["received"] == 2
    assert elapsed < 2.0  # the client gave up on the slow one rather than waiting for it


def test_fault_responses_on_the_wire() -> None:
    faults = Faults(rate_limit_every=1, retry_after="3")
    with LocalEndpoint(key=KEY, faults=faults) as endpoint:
        status, headers, body = raw_request(
            endpoint, "POST", "/v1/chat/completions", chat_body("hello")
        )
    assert status == 429
    assert headers["retry-after"] == "3"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"


def test_content_filter_as_finish_reason() -> None:
    with LocalEndpoint(key=KEY, filter_phrases=("forbidden",)) as endpoint:
        completion = ask(client_for(endpoint), "Something forbidden here", n=2)
        assert ask(client_for(endpoint), "Something harmless").choices[0].finish_reason == "stop"
        stats = endpoint.stats.snapshot()
    assert [choice.finish_reason for choice in completion.choices] == ["content_filter"] * 2
    assert [choice.message.content for choice in completion.choices] == ["", ""]
    assert stats["faults"] == {"filter": 1}
    assert stats["answered"] == 2 and stats["choices_answered"] == 3


def test_content_filter_as_an_error() -> None:
    with LocalEndpoint(key=KEY, filter_phrases=("forbidden",), filter_mode="error") as endpoint:
        with pytest.raises(openai.BadRequestError) as raised:
            ask(client_for(endpoint, max_retries=2), "Something forbidden here")
        stats = endpoint.stats.snapshot()
    assert raised.value.code == "content_filter"
    assert raised.value.param == "prompt"
    assert stats["received"] == 1  # a 400 is not retried
    assert stats["answered"] == 0 and stats["faults"] == {"filter": 1}


def test_logprobs_carry_the_first_tokens_alternatives() -> None:
    def reply(request: ChatRequest, index: int) -> Reply:
        return Reply(
            "Aligned because it helps.",
            top_logprobs=[("Aligned", -0.1), ("Misaligned", -2.3), ("Neutral", -4.0)],
        )

    with LocalEndpoint(key=KEY, reply=reply) as endpoint:
        completion = ask(client_for(endpoint), logprobs=True, top_logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [token.token for token in logprobs.content] == ["Aligned", " because", " it", " helps."]
    first = logprobs.content[0]
    assert [(alt.token, alt.logprob) for alt in first.top_logprobs] == [
        ("Aligned", -0.1),
        ("Misaligned", -2.3),
    ]
    assert first.logprob == -0.1
    assert [(alt.token, alt.logprob) for alt in logprobs.content[1].top_logprobs] == [
        (" because", 0.0)
    ]


def test_no_logprobs_unless_asked(endpoint: LocalEndpoint) -> None:
    assert ask(client_for(endpoint)).choices[0].logprobs is None


def test_requests_are_served_concurrently() -> None:
    with LocalEndpoint(key=KEY, latency_s=0.1) as endpoint:
        client = client_for(endpoint)
        ask(client)  # connection set-up and imports out of the timing
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            texts = list(
                pool.map(lambda i: ask(client, f"q{i}").choices[0].message.content, range(16))
            )
        elapsed = time.perf_counter() - started
        stats = endpoint.stats.snapshot()
    assert texts == ["No."] * 16
    assert stats["max_in_flight"] == 16
    assert elapsed < 1.0, elapsed


def test_a_reply_that_raises_is_a_500_and_recorded() -> None:
    def reply(request: ChatRequest, index: int) -> Reply:
        raise ValueError("broken reply")

    with LocalEndpoint(key=KEY, reply=reply) as endpoint:
        with pytest.raises(openai.InternalServerError):
            ask(client_for(endpoint))
        assert endpoint.stats.errors == ["reply failed: ValueError: broken reply"]


def chat_body(text: str) -> bytes:
    return json.dumps({"model": "m", "messages": [user_message(text)]}).encode()


def raw_request(
    endpoint: LocalEndpoint,
    method: str,
    path: str,
    body: bytes | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        if chunked and body is not None:
            # Three pieces: the server has to join chunks, not just read one.
            pieces = iter([body[:10], body[10:20], body[20:]])
            connection.request(method, path, body=pieces, headers=headers, encode_chunked=True)
        else:
            connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return (
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            json.loads(payload),
        )
    finally:
        connection.close()


def test_chunked_bodies_and_keep_alive(endpoint: LocalEndpoint) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    try:
        for text in ("first", "second"):  # both on one connection
            body = chat_body(text)
            connection.request(
                "POST",
                "/v1/chat/completions",
                body=iter([body[:7], body[7:30], body[30:]]),
                headers=headers,
                encode_chunked=True,
            )
            response = connection.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["choices"][0]["message"]["content"] == "No."
    finally:
        connection.close()
    assert endpoint.stats.answered_texts == ["first", "second"]


def test_unknown_paths_get_404(endpoint: LocalEndpoint) -> None:
    status, _, body = raw_request(endpoint, "POST", "/v1/completions", chat_body("x"))
    assert status == 404
    assert set(body["error"]) == {"message", "type", "param", "code"}
    status, _, _ = raw_request(endpoint, "GET", "/v1/chat/completions")
    assert status == 404
    assert endpoint.stats.received == 0


def test_the_endpoint_stops_with_open_connections_and_pending_requests() -> None:
    endpoint = LocalEndpoint(key=KEY, latency_s=5.0).start()
    client = client_for(endpoint)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            ask(client)
        except openai.APIError as error:
            outcome.append(error)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 5
    while endpoint.stats.received == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    endpoint.stop()
    assert time.perf_counter() - started < 2.0
    worker.join(timeout=10)
    assert not worker.is_alive()
    # The pending request's connection was closed under it, without an answer.
    assert [type(error) for error in outcome] == [openai.APIConnectionError]


def test_the_process_mode_prints_ready_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.openai_server", "--port", "0", "--key", KEY],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=30), "no READY line within 30 s"
        line = process.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:") and line.endswith("/v1\n"), line
        base_url = line.split()[1]
        client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=10)
        assert ask(client).choices[0].message.content == "No."
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
