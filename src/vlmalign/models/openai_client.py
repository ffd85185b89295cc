"""Many requests to one OpenAI-compatible endpoint at once, each result handed back as it arrives.

`EndpointClient.each(jobs, ask)` runs `ask(client, job)` for every job with at most
`max_concurrency` in flight, starting no more than `requests_per_minute`, on an event loop this
module owns: the caller iterates over (index, result) pairs and stores each before asking for
the next, so one writer records everything and a killed process loses only what was in flight.

Retries are the `openai` client's own: 408, 409, 429 and 5xx replies, timeouts and dropped
connections are retried `max_retries` times with exponential backoff (0.5 s doubling to 8 s,
less up to 25% jitter), a `Retry-After` of up to 60 s taking its place. What still fails stops
the iteration with one line naming the request; an authentication error stops it at once. No
message carries the API key: it is read from the environment here and scrubbed from any text an
endpoint sends back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from vlmalign.data.text import printable
from vlmalign.errors import ModelError
from vlmalign.models.endpoint import EndpointSettings

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")
Value = TypeVar("Value")
Arrival = tuple[int, Result | BaseException]  # a job's index and its result or failure

# Local servers (vLLM, SGLang, Ollama) take any key; the client needs one to send.
NO_KEY = "no-key"
MESSAGE_LIMIT = 200


async def chat_completion(client: AsyncOpenAI, body: dict[str, Any]) -> ChatCompletion:
    """POST a chat request through the client (its retries, timeouts and errors) as JSON.

    `client.chat.completions.create` first walks the whole request to apply its type aliases,
    about 4 ms a request on a small CPU, more than all else a request costs the client; ours
    are plain JSON with no aliased field, so they are posted as they are.
    """
    from openai.types.chat import ChatCompletion

    return await client.post("/chat/completions", body=body, cast_to=ChatCompletion)


class StartSpacing:
    """Requests start at least 60 / requests_per_minute seconds apart (None: no limit)."""

    def __init__(self, per_minute: float | None) -> None:
        self.gap = 60.0 / per_minute if per_minute else 0.0
        self.next_start = 0.0

    async def wait(self) -> None:
        if not self.gap:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self.next_start)
        self.next_start = start + self.gap  # taken before sleeping: the next caller queues after
        if start > now:
            await asyncio.sleep(start - now)


class EndpointClient:
    """One endpoint, its key and limits; `who` names the model or judge in every error."""

    def __init__(self, settings: EndpointSettings, who: str) -> None:
        self.settings = settings
        self.who = who
        self.url = settings.url()
        key = os.environ.get(settings.api_key_env, "")
        if not key and settings.is_openai():
            raise ModelError(
                f"{who}: set ${settings.api_key_env} to your API key (or point api.base_url at "
                "another endpoint)"
            )
        self._key = key or NO_KEY

    def __repr__(self) -> str:  # never the key
        return f"EndpointClient({self.who!r}, {self.url!r})"

    def open(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI, DefaultAioHttpClient

        return AsyncOpenAI(
            base_url=self.url,
            api_key=self._key,
            max_retries=self.settings.max_retries,
            timeout=self.settings.timeout_s,
            # aiohttp's transport costs the client about half what httpx's own does per
            # request: what bounds the rate on a small machine (benchmarks/api.py).
            http_client=DefaultAioHttpClient(),
        )

    def each(
        self,
        jobs: Sequence[Job],
        ask: Callable[[AsyncOpenAI, Job], Awaitable[Result]],
        describe: Callable[[Job], str],
    ) -> Iterator[list[tuple[int, Result]]]:
        """The (index, result) pairs of every job, in groups: each group holds the results that
        arrived while the caller handled the previous one (one store transaction, not one per
        result). A failure stops everything in flight and raises one ModelError naming the job
        (`describe`), after the results before it were handed over; closing the iterator early
        cancels what is in flight too."""
        if not jobs:
            return
        # The requests run on an event loop of their own thread: the caller may be inside a
        # running loop (a notebook), and it writes each group while the next arrive.
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="endpoint", daemon=True)
        thread.start()

        def run(coroutine: Coroutine[Any, Any, Value]) -> Value:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        pending = deque(range(len(jobs)))
        spacing = StartSpacing(self.settings.requests_per_minute)
        workers: list[asyncio.Task[None]] = []

        async def start() -> tuple[AsyncOpenAI, asyncio.Queue[Arrival[Result]], asyncio.Event]:
            client = self.open()
            done: asyncio.Queue[Arrival[Result]] = asyncio.Queue()
            failed = asyncio.Event()  # no request starts after one failed for good

            async def work() -> None:
                while pending and not failed.is_set():
                    index = pending.popleft()
                    await spacing.wait()
                    try:
                        result: Result | BaseException = await ask(client, jobs[index])
                    except Exception as exc:  # reported by the consumer, which stops the rest
                        failed.set()
                        result = exc
                    await done.put((index, result))

            count = min(self.settings.max_concurrency, len(jobs))
            workers.extend(asyncio.create_task(work()) for _ in range(count))
            return client, done, failed

        async def arrived(done: asyncio.Queue[Arrival[Result]]) -> list[Arrival[Result]]:
            group = [await done.get()]
            while not done.empty():
                group.append(done.get_nowait())
            return group

        async def stop(client: AsyncOpenAI) -> None:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await client.close()

        client: AsyncOpenAI | None = None
        try:
            client, done, _ = run(start())
            left = len(jobs)
            while left:
                group: list[tuple[int, Result]] = []
                errors: list[tuple[int, BaseException]] = []
                for index, result in run(arrived(done)):
                    left -= 1
                    if isinstance(result, BaseException):
                        errors.append((index, result))
                    else:
                        group.append((index, result))
                if group:  # what arrived before a failure is kept
                    yield group
                if errors:
                    index, error = errors[0]
                    raise self.failure(error, describe(jobs[index])) from None
        finally:
            if client is not None:
                run(stop(client))
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def all(
        self,
        jobs: Sequence[Job],
        ask: Callable[[AsyncOpenAI, Job], Awaitable[Result]],
        describe: Callable[[Job], str],
    ) -> list[Result]:
        """Every job's result, in the jobs' order."""
        results = {
            index: result for group in self.each(jobs, ask, describe) for index, result in group
        }
        return [results[index] for index in range(len(jobs))]

    def owned_by(self, model: str) -> str | None:
        """Who the endpoint says serves `model` (vLLM says "vllm"), or None if it does not say."""

        async def ask(client: AsyncOpenAI, job: str) -> str | None:
            async for entry in client.models.list():
                if entry.id == job:
                    return entry.owned_by
            return None

        return self.all([model], ask, lambda job: f"the model list (for {job!r})")[0]

    def scrub(self, text: str) -> str:
        """An endpoint's text made safe to show: the key removed, one short printable line."""
        if self._key != NO_KEY:
            text = text.replace(self._key, "***")
        line = " ".join(printable(text).split())
        return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"

    def failure(self, exc: BaseException, what: str) -> ModelError:
        """One line for a request that failed for good (never with the key in it)."""
        import openai

        retried = f"after {self.settings.max_retries} retries"
        where = f"{self.who} at {self.url}"
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ModelError(
                f"{where} refused the API key in ${self.settings.api_key_env} "
                f"(HTTP {exc.status_code}); set the right key and rerun: nothing received is lost"
            )
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                f"{where}: {what}: no reply within {self.settings.timeout_s:g} s, {retried}; "
                "rerun to ask again for what is missing"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(
                f"{where}: {what}: cannot connect, {retried}; rerun to ask again for what is "
                "missing"
            )
        if isinstance(exc, openai.APIStatusError):
            tries = retried if exc.status_code in (408, 409, 429) or exc.status_code >= 500 else ""
            body = exc.body.get("message") if isinstance(exc.body, dict) else None
            said = self.scrub(str(body or exc.message))
            return ModelError(
                f"{where}: {what}: HTTP {exc.status_code}{', ' + tries if tries else ''}: {said}"
            )
        if isinstance(exc, ModelError):
            return ModelError(self.scrub(str(exc)))
        return ModelError(f"{where}: {what}: {type(exc).__name__}: {self.scrub(str(exc))}")
