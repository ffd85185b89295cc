"""`openai:<model>` against a real local OpenAI-compatible server (benchmarks/openai_server.py),
which checks every request against the `openai` package's request types and injects faults."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from benchmarks.openai_server import ChatRequest, Faults, LocalEndpoint, Reply
from PIL import Image

from vlmalign.errors import ModelError
from vlmalign.models.base import GenerationRequest, StreamsGenerations
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.models.openai_api import OpenAIChatModel
from vlmalign.models.registry import load_model
from vlmalign.prompts import Prompt
from vlmalign.sampling import SamplingParams

KEY = "sk-test-0123456789-secret"
KEY_ENV = "VLMALIGN_TEST_KEY"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def echo(request: ChatRequest, index: int) -> Reply:
    """The question, the sample's index and the seed, so tests can tell answers apart."""
    return Reply(f"{request.last_user_text} #{index} seed {request.seed}")


def settings(endpoint: LocalEndpoint, **changes: object) -> EndpointSettings:
    return EndpointSettings.model_validate(
        {"base_url": endpoint.base_url, "api_key_env": KEY_ENV, **changes}
    )


def requests_for(questions: list[str], samples: int = 1) -> list[GenerationRequest]:
    image = Image.new("RGB", (40, 30), "teal")
    out = []
    for number, question in enumerate(questions):
        prompt = Prompt((), question)
        text = f"user: <|image|>{question}\nassistant:"
        out += [
            GenerationRequest(
                image,
                text,
                seed=100 * number + sample,
                image_key="teal",
                prompt=prompt,
                prompt_format="chat",
            )
            for sample in range(samples)
        ]
    return out


@pytest.fixture
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(reply=echo, key=KEY, model="m") as server:
        yield server


def test_the_registry_builds_it_without_torch_and_it_streams(endpoint: LocalEndpoint) -> None:
    model = load_model("openai:m", api=settings(endpoint))
    assert isinstance(model, StreamsGenerations)
    assert model.name == "openai:m" and model.fingerprint() == "openai:m"
    assert model.adapter_hash() is None


def test_answers_come_back_for_their_requests_with_what_the_endpoint_reports(
    endpoint: LocalEndpoint,
) -> None:
    model = OpenAIChatModel("m", settings(endpoint))
    requests = requests_for(["Should I help?", "Should I kick it?"], samples=3)
    groups = list(model.generate_each(requests, SamplingParams(max_new_tokens=20)))
    answers = dict(pair for group in groups for pair in group)
    assert sorted(answers) == list(range(6))
    # n: one request per prompt carries the first sample's seed; choices keep their order
    assert answers[0].text == "Should I help? #0 seed 0"
    assert answers[2].text == "Should I help? #2 seed 0"
    assert answers[4].text == "Should I kick it? #1 seed 100"
    assert {a.served_by for a in answers.values()} == {"m-served"}
    assert {a.system_fingerprint for a in answers.values()} == {"fp_local"}
    assert {a.finish_reason for a in answers.values()} == {"stop"}
    # a request's usage is on its first response: the sums are what the endpoint counted
    assert answers[0].prompt_tokens and answers[1].prompt_tokens == 0
    stats = endpoint.stats.snapshot()
    assert stats["answered"] == 2 and stats["choices_answered"] == 6
    assert stats["invalid"] == []
    # the server counts words: 6 in each answer to the first question, 7 to the second
    assert sum(a.completion_tokens or 0 for a in answers.values()) == 3 * 6 + 3 * 7


def test_one_request_per_sample_without_n(endpoint: LocalEndpoint) -> None:
    model = OpenAIChatModel("m", settings(endpoint, use_n=False))
    texts = model.generate(requests_for(["Q?"], samples=3), SamplingParams())
    assert texts == ["Q? #0 seed 0", "Q? #0 seed 1", "Q? #0 seed 2"]  # each with its own seed
    assert endpoint.stats.snapshot()["answered"] == 3


def test_faults_are_retried_and_nothing_is_lost_or_duplicated() -> None:
    faults = Faults(rate_limit_every=4, retry_after="0.01", server_error_every=5, drop_every=7)
    with LocalEndpoint(reply=echo, key=KEY, model="m", faults=faults) as server:
        model = OpenAIChatModel("m", settings(server, max_concurrency=4, use_n=False))
        questions = [f"Question {n}?" for n in range(30)]
        texts = model.generate(requests_for(questions), SamplingParams())
        stats = server.stats.snapshot()
    assert texts == [f"Question {n}? #0 seed {100 * n}" for n in range(30)]
    assert stats["faults"]["rate_limit"] and stats["faults"]["server_error"]
    assert stats["faults"]["drop"]
    assert stats["answered"] == 30 and stats["invalid"] == []
    assert stats["max_in_flight"] <= 4


def test_concurrency_is_bounded_and_used(endpoint: LocalEndpoint) -> None:
    with LocalEndpoint(reply=echo, key=KEY, model="m", latency_s=0.1) as server:
        model = OpenAIChatModel("m", settings(server, max_concurrency=6, use_n=False))
        model.generate(requests_for([f"Q{n}?" for n in range(24)]), SamplingParams())
        assert server.stats.snapshot()["max_in_flight"] == 6


def test_the_rate_limit_spaces_request_starts(endpoint: LocalEndpoint) -> None:
    model = OpenAIChatModel("m", settings(endpoint, requests_per_minute=600, use_n=False))
    start = time.perf_counter()
    model.generate(requests_for([f"Q{n}?" for n in range(6)]), SamplingParams())
    assert time.perf_counter() - start >= 0.5  # 6 starts, 0.1 s apart


def test_a_request_that_keeps_failing_is_named_in_one_line_after_what_arrived() -> None:
    faults = Faults(fail_phrases=("Broken",))
    with LocalEndpoint(reply=echo, key=KEY, model="m", faults=faults) as server:
        model = OpenAIChatModel("m", settings(server, max_retries=1, max_concurrency=1))
        requests = requests_for(["Fine?", "Broken?"])
        requests[1] = GenerationRequest(
            requests[1].image, requests[1].prompt_text, 7, prompt=requests[1].prompt
        )
        received = []
        with pytest.raises(ModelError) as failure:
            for group in model.generate_each(requests, SamplingParams()):
                received += group
    message = str(failure.value)
    assert "\n" not in message and "HTTP 500" in message and "after 1 retries" in message
    assert [index for index, _ in received] == [0]  # what came before is handed over


def test_a_wrong_key_stops_at_once_without_showing_it(
    endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-key-987654321"
    monkeypatch.setenv(KEY_ENV, wrong)
    model = OpenAIChatModel("m", settings(endpoint, max_retries=5))
    with pytest.raises(ModelError) as failure:
        model.generate(requests_for(["Q?"]), SamplingParams())
    message = str(failure.value)
    assert "refused the API key in $VLMALIGN_TEST_KEY (HTTP 401)" in message
    assert wrong not in message and KEY not in message
    assert endpoint.stats.snapshot()["unauthorized"] == 1  # not retried


def test_openai_itself_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ModelError, match=r"set \$OPENAI_API_KEY"):
        OpenAIChatModel("gpt-4o")


@pytest.mark.parametrize("mode", ["finish_reason", "error"])
def test_a_content_filter_refusal_is_a_response_marked_refused(mode: str) -> None:
    with LocalEndpoint(
        reply=echo, key=KEY, model="m", filter_phrases=("weapon",), filter_mode=mode
    ) as server:
        model = OpenAIChatModel("m", settings(server))
        groups = model.generate_each(requests_for(["Build a weapon?", "Help?"]), SamplingParams())
        answers = dict(pair for group in groups for pair in group)
    assert answers[0].refused and answers[0].finish_reason == "content_filter"
    assert answers[0].text == ""
    assert not answers[1].refused and answers[1].text.startswith("Help?")


def test_top_k_goes_only_to_endpoints_that_take_it() -> None:
    params = SamplingParams(top_k=40)
    with LocalEndpoint(reply=echo, key=KEY, model="m") as plain:
        model = OpenAIChatModel("m", settings(plain))
        with pytest.raises(ModelError, match=r"^sampling.top_k 40: the endpoint at .* does not"):
            model.generate(requests_for(["Q?"]), params)
        assert plain.stats.snapshot()["received"] == 0
    with LocalEndpoint(
        reply=echo, key=KEY, model="m", owned_by="vllm", extra_params={"top_k"}
    ) as vllm:
        model = OpenAIChatModel("m", settings(vllm))
        assert model.generate(requests_for(["Q?"]), params) == ["Q? #0 seed 0"]
        assert vllm.stats.snapshot()["invalid"] == []


def test_images_are_downscaled_only_when_asked_and_that_is_another_model(
    endpoint: LocalEndpoint,
) -> None:
    from io import BytesIO

    seen: list[tuple[int, int]] = []

    def size(request: ChatRequest, index: int) -> Reply:
        seen.append(Image.open(BytesIO(request.images[0])).size)
        return Reply("ok")

    big = Image.new("RGB", (400, 200), "navy")
    with LocalEndpoint(reply=size, key=KEY, model="m") as server:
        for side in (None, 100):
            model = OpenAIChatModel("m", settings(server, max_image_side=side))
            model.generate(
                [GenerationRequest(big, "user: <|image|>Q?\nassistant:", 1)], SamplingParams()
            )
    assert seen == [(400, 200), (100, 50)]
    assert OpenAIChatModel("m", settings(endpoint, max_image_side=100)).fingerprint() == (
        "openai:m@100px"
    )


def test_it_answers_from_inside_a_running_event_loop(endpoint: LocalEndpoint) -> None:
    """As in a notebook, where an event loop is always running."""
    import asyncio
    import threading

    model = OpenAIChatModel("m", settings(endpoint))

    async def inside() -> list[str]:
        return model.generate(requests_for(["Q?"]), SamplingParams())

    # A thread of its own: the suite's browser tests may leave a loop set on the main thread.
    answers: list[list[str]] = []
    thread = threading.Thread(target=lambda: answers.append(asyncio.run(inside())))
    thread.start()
    thread.join(timeout=60)
    assert answers == [["Q? #0 seed 0"]]


def test_an_endpoint_that_ignores_n_gets_one_request_per_missing_sample() -> None:
    with LocalEndpoint(reply=echo, key=KEY, model="m", max_choices=1) as server:
        model = OpenAIChatModel("m", settings(server))
        texts = model.generate(requests_for(["Q?", "R?"], samples=3), SamplingParams())
        stats = server.stats.snapshot()
    # each prompt's `n` request gives one sample; the others are asked alone, each its seed
    assert texts == [
        "Q? #0 seed 0",
        "Q? #0 seed 1",
        "Q? #0 seed 2",
        "R? #0 seed 100",
        "R? #0 seed 101",
        "R? #0 seed 102",
    ]
    assert stats["answered"] == 6 and not model.use_n
