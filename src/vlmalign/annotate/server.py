"""Serving the annotation app: uvicorn with read deadlines, a connection cap and no proxy trust.

uvicorn has no deadline for a request's headers, so a client that opens connections and sends
them a byte at a time keeps every one open; enough of them use up the process's file limit, and
then every accept fails ("Too many open files") and annotators time out. `serve` runs uvicorn's
h11 protocol with a `GuardedProtocol` subclass that tracks each server's connections in a
`Connections` registry:

- **Header deadline.** A connection must deliver a request's complete headers within
  `header_timeout` of being opened, or of the end of its previous response; else it is closed.
- **Body deadline.** A request's body must be in within `body_timeout` of its headers, and a
  client must read a response the server is blocked on (writing paused) within `body_timeout`.
- **Keep-alive.** An idle kept-alive connection is closed after `keep_alive` seconds (uvicorn's
  `timeout_keep_alive`).
- **Connection cap.** At most `max_connections` are open, below the file limit with room for
  the store's files, static files and logs. When a new connection would exceed it, the
  connection that has waited longest for its request (headers or body) is closed, so a client
  that sends its request at once always gets in. Accepting never stops: an accept that fails
  with EMFILE is what takes servers down.

Closed connections are aborted (their file descriptor is freed at once, even when unsent data is
queued) and counted; the log gets one line for the first and then one per `LOG_EVERY`, never one
per connection. uvicorn's own per-connection warnings (invalid requests) are thinned the same
way. X-Forwarded-For and friends are ignored unless `trusted_proxies` names the proxy's address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from vlmalign.errors import VlmalignError

HEADER_TIMEOUT = 10.0  # seconds for a request's complete headers
BODY_TIMEOUT = 30.0  # seconds for its body (at most 64 KB), and for reading a stalled response
KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open (uvicorn's default)
RESERVED_FILES = 64  # for SQLite's 3 files, static files and images being sent, logs, the loop
MAX_CONNECTIONS = 4096  # default cap even with a large file limit: a lab team needs far fewer
MIN_CONNECTIONS = 16  # below this the file limit is too low to serve anyone
LOG_EVERY = 1000  # one log line per this many closed connections

log = logging.getLogger("uvicorn.error")

REASONS = {
    "headers": "sent no complete headers in time",
    "body": "sent no complete body in time",
    "send": "read no response in time",
    "cap": "waited longest when the connection cap was reached",
}


@dataclass(frozen=True)
class ServerSettings:
    """How the app is served: deadlines (seconds), the connection cap and trusted proxies."""

    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    keep_alive: int = KEEP_ALIVE
    max_connections: int = MAX_CONNECTIONS
    backlog: int = 128
    trusted_proxies: tuple[str, ...] = ()


def file_limit() -> int:
    """The process's soft limit on open files (`ulimit -n`)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def connection_limits(files: int) -> tuple[int, int]:
    """The most connections a file limit allows, and the accept backlog, as (cap, backlog).

    asyncio accepts up to `backlog` connections per event-loop pass and a new connection is
    counted two passes later, so up to 3 × backlog descriptors may be open beyond the cap, on
    top of RESERVED_FILES for everything else.
    """
    backlog = max(16, min(files // 16, 1024))
    return files - RESERVED_FILES - 3 * backlog, backlog


def trusted_proxy(value: str) -> str:
    """An IP address or network (CIDR) in the form uvicorn's `forwarded_allow_ips` reads."""
    text = value.strip()
    try:
        if "/" in text:
            return str(ipaddress.ip_network(text, strict=False))
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise VlmalignError(
            f"--trusted-proxy {value!r}: give the proxy's IP address or network (such as "
            "127.0.0.1 or 10.0.0.0/8); a client could otherwise choose its own address"
        ) from None


def server_settings(
    *,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    keep_alive: int = KEEP_ALIVE,
    max_connections: int | None = None,
    trusted_proxies: Iterable[str] = (),
    files: int | None = None,
) -> ServerSettings:
    """Checked settings; `files` is the open-file limit (default: this process's)."""
    files = file_limit() if files is None else files
    most, backlog = connection_limits(files)
    if most < MIN_CONNECTIONS:
        raise VlmalignError(
            f"the open-file limit (ulimit -n {files}) leaves too few for connections; raise it "
            f"to at least {files + MIN_CONNECTIONS - most}"
        )
    if max_connections is not None and max_connections > most:
        raise VlmalignError(
            f"--max-connections {max_connections}: the open-file limit (ulimit -n {files}) "
            f"allows at most {most}; raise the limit or lower --max-connections"
        )
    if not 0 < header_timeout <= 3600 or not 0 < body_timeout <= 3600:
        raise VlmalignError("--header-timeout and --body-timeout must lie in (0, 3600] seconds")
    if not 1 <= keep_alive <= header_timeout:
        raise VlmalignError(
            f"--keep-alive {keep_alive}: must be at least 1 and at most --header-timeout "
            f"({header_timeout:g}), which also ends an idle connection"
        )
    return ServerSettings(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keep_alive=keep_alive,
        max_connections=min(most, MAX_CONNECTIONS) if max_connections is None else max_connections,
        backlog=backlog,
        trusted_proxies=tuple(dict.fromkeys(trusted_proxy(v) for v in trusted_proxies)),
    )


class Connections:
    """One server's open connections, and those waiting on their client, longest first."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.open: set[GuardedProtocol] = set()
        # waiting for a request (headers or body), in the order they began waiting
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self.closed: Counter[str] = Counter()

    def add(self, connection: GuardedProtocol) -> None:
        """Count a new connection (already waiting); close the longest waiters beyond the cap."""
        self.open.add(connection)
        while len(self.open) > self.settings.max_connections and self.waiting:
            next(iter(self.waiting)).drop("cap")

    def wait(self, connection: GuardedProtocol) -> None:
        """`connection` begins waiting for a request: it goes to the end of the line."""
        self.waiting.pop(connection, None)
        self.waiting[connection] = None

    def served(self, connection: GuardedProtocol) -> None:
        self.waiting.pop(connection, None)

    def remove(self, connection: GuardedProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)

    def count_closed(self, reason: str) -> None:
        """Count a connection closed for `reason`; log the first and then one per LOG_EVERY."""
        self.closed[reason] += 1
        total = sum(self.closed.values())
        if total == 1 or total % LOG_EVERY == 0:
            log.warning(self.summary(total))

    def summary(self, total: int, final: bool = False) -> str:
        s = self.settings
        parts = ", ".join(f"{n} {REASONS[r]}" for r, n in self.closed.items())
        return (
            f"closed {total} slow or idle connection{'s' * (total != 1)} "
            f"{'in all' if final else 'so far'} ({parts}; deadlines: headers "
            f"{s.header_timeout:g} s, body {s.body_timeout:g} s; cap {s.max_connections} "
            f"connections){'' if final else f'; one line per {LOG_EVERY} closed'}"
        )


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines, counted in its server's `Connections`.

    A subclass per server (`guarded_protocol`) sets `registry`. Hooks: `connection_made`
    (count, arm the header deadline), `handle_events` (headers in: arm the body deadline, or
    stop waiting; body in: stop waiting), `on_response_complete` (wait for the next request
    again), `pause_writing`/`resume_writing` (the send deadline), `connection_lost`.
    """

    registry: ClassVar[Connections]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        self._dropped = False

    # --- connection lifetime --------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_request()
        self.registry.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadlines()
        self.registry.remove(self)
        super().connection_lost(exc)

    def drop(self, reason: str) -> None:
        """Close now, discarding anything unsent, so the file descriptor is freed at once."""
        if self._dropped:
            return
        self._dropped = True
        self._cancel_deadlines()
        self.registry.remove(self)
        self.registry.count_closed(reason)
        self.transport.abort()

    # --- reading a request ----------------------------------------------------------------
    def _await_request(self) -> None:
        """Wait for a request's headers: from the connection's start or the last response."""
        self._reading_body = False
        self._arm_read("headers", self.registry.settings.header_timeout)
        self.registry.wait(self)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self._dropped or self.cycle is None:
            return
        if self.cycle is not cycle:  # a new request's headers are complete
            self._reading_body = True
            self._arm_read("body", self.registry.settings.body_timeout)
        if self._reading_body and not self.cycle.more_body:  # and its body
            self._reading_body = False
            self._cancel_read()
            self.registry.served(self)

    def on_response_complete(self) -> None:
        if not self._dropped:
            # before uvicorn's own handling, which may start a pipelined request at once
            self._await_request()
        super().on_response_complete()

    # --- writing a response ---------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if not self._dropped and self._send_deadline is None:
            self._send_deadline = self.loop.call_later(
                self.registry.settings.body_timeout, self.drop, "send"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    # --- deadlines --------------------------------------------------------------------------
    def _arm_read(self, reason: str, seconds: float) -> None:
        self._cancel_read()
        self._read_deadline = self.loop.call_later(seconds, self.drop, reason)

    def _cancel_read(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _cancel_deadlines(self) -> None:
        self._cancel_read()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None


def guarded_protocol(settings: ServerSettings) -> type[GuardedProtocol]:
    """A `GuardedProtocol` class with its own registry, for one server."""

    class GuardedH11Protocol(GuardedProtocol):
        registry = Connections(settings)

    return GuardedH11Protocol


class QuietRepeats(logging.Filter):
    """Thins uvicorn's per-connection warnings: the first, then one per LOG_EVERY, counted."""

    MESSAGES = ("Invalid HTTP request received.", "Unsupported upgrade request.")

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message not in self.MESSAGES:
            return True
        self.seen[message] += 1
        n = self.seen[message]
        if n == 1 or n % LOG_EVERY == 0:
            record.msg = f"{message} ({n} so far; one line per {LOG_EVERY})"
            return True
        return False


def uvicorn_options(host: str, port: int, settings: ServerSettings) -> dict[str, Any]:
    """The keyword arguments of `uvicorn.run` for these settings."""
    trusted = list(settings.trusted_proxies)
    return {
        "host": host,
        "port": port,
        "log_level": "warning",
        "loop": "asyncio",  # asyncio's accept loop, whose batch `backlog` bounds
        "http": guarded_protocol(settings),
        "ws": "none",  # no upgrade may move a connection out of the registry
        "timeout_keep_alive": settings.keep_alive,
        "backlog": settings.backlog,
        # uvicorn's limit_concurrency counts open connections, slow ones too, and would answer
        # annotators 503; the connection cap bounds connections (and so requests) instead.
        "limit_concurrency": None,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted,
    }


def serve(app: Any, *, host: str, port: int, settings: ServerSettings) -> None:
    """Serve `app` until Ctrl+C (blocks)."""
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietRepeats) for f in error_log.filters):
        error_log.addFilter(QuietRepeats())
    options = uvicorn_options(host, port, settings)
    uvicorn.run(app, **options)
    registry = options["http"].registry
    if total := sum(registry.closed.values()):
        log.warning(registry.summary(total, final=True))
