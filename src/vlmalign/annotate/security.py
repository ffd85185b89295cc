"""The annotation app's guards: Host allow-list, body limits, sign-in rate limits, sessions.

Kept apart from the endpoints (`annotate.app`) so each can be read and tested on its own: none
of this touches the store, and anonymous traffic never creates state here.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_SESSIONS = 10_000  # signed-in sessions; a sign-in beyond it is refused, nobody is evicted
SESSIONS_PER_ANNOTATOR = 32  # an annotator's own oldest session goes beyond this
MIN_TOKEN = 16  # characters of an access token
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_FIELDS = 16  # fields of a form (the app's forms have at most four)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "", "*")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def host_name(value: str) -> str:
    """The name in a Host header or an --allowed-host value, without port, brackets and final
    dot, lower-cased; "" when malformed. A bare IPv6 address (config only) is kept whole."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return ""
        return value[1:end]
    if value.count(":") == 1:
        value, port = value.split(":")
        if not port.isdigit():
            return ""
    return value.rstrip(".")


def allowed_hosts(host: str = "127.0.0.1", extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the bound address unless it is a wildcard, and the extra names."""
    names = {*LOOPBACK_HOSTS, *(host_name(name) for name in extra)}
    if host.strip() not in WILDCARD_HOSTS:
        names.add(host_name(host))
    names.discard("")
    return frozenset(names)


def token_problem(token: str) -> str | None:
    """Why an access token is too weak to guard the app, or None."""
    if len(token) < MIN_TOKEN:
        return (
            f"--token must be at least {MIN_TOKEN} characters (it has {len(token)}); "
            "pass --token auto to generate one"
        )
    return None


class Guard:
    """ASGI middleware, outermost: security headers on every response, then the Host
    allow-list (400) and the body limits (413, 415), both before anything parses the request."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: frozenset[str],
        max_body: int = MAX_BODY,
        max_fields: int = MAX_FIELDS,
    ) -> None:
        self.app, self.hosts, self.max_body, self.max_fields = app, hosts, max_body, max_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        headers = Headers(scope=scope)
        if host_name(headers.get("host", "")) not in self.hosts:
            text = "unknown Host header; start the app with --allowed-host NAME to serve NAME"
            await PlainTextResponse(text, 400)(scope, receive, send_with_headers)
            return
        length = headers.get("content-length")
        too_large = PlainTextResponse(f"request body over {self.max_body} bytes", 413)
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await too_large(scope, receive, send_with_headers)
            return
        body = b""
        more = scope["method"] not in ("GET", "HEAD") or length is not None
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:  # a chunked body with no Content-Length
                await too_large(scope, receive, send_with_headers)
                return
        if body:
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/x-www-form-urlencoded":
                text = "send forms as application/x-www-form-urlencoded"
                await PlainTextResponse(text, 415)(scope, receive, send_with_headers)
                return
            if body.count(b"&") + 1 > self.max_fields:
                text = f"form has more than {self.max_fields} fields"
                await PlainTextResponse(text, 413)(scope, receive, send_with_headers)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)


# --- sign-in rate limit --------------------------------------------------------------------
@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float
    stamp: float

    def take(self, at: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (at - self.stamp) * self.per_second)
        self.stamp = at
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class RateLimit:
    """Sign-in attempts: a burst, then a steady rate (per client address, and for everyone)."""

    client_burst: int = 10
    client_per_minute: float = 10.0
    total_burst: int = 60
    total_per_minute: float = 60.0
    clients_tracked: int = 4096  # the least recently seen client's bucket goes beyond this


class SignInLimiter:
    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit, self.clock = limit, clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self._total = TokenBucket(
            limit.total_burst, limit.total_per_minute / 60, limit.total_burst, clock()
        )

    def allow(self, client: str) -> bool:
        with self._lock:
            at = self.clock()
            bucket = self._clients.pop(client, None) or TokenBucket(
                self.limit.client_burst,
                self.limit.client_per_minute / 60,
                self.limit.client_burst,
                at,
            )
            self._clients[client] = bucket
            while len(self._clients) > self.limit.clients_tracked:
                self._clients.popitem(last=False)
            return bucket.take(at) and self._total.take(at)


# --- sessions ----------------------------------------------------------------------------------
@dataclass
class Session:
    annotator: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))


class Sessions:
    """Signed-in sessions only: created at a successful sign-in, never by anonymous traffic.

    An annotator's sign-ins beyond SESSIONS_PER_ANNOTATOR drop only that annotator's oldest
    session; when MAX_SESSIONS are live a new sign-in is refused and nobody is signed out.
    """

    def __init__(
        self, limit: int = MAX_SESSIONS, per_annotator: int = SESSIONS_PER_ANNOTATOR
    ) -> None:
        self.limit, self.per_annotator = limit, per_annotator
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}
        self._by_annotator: dict[str, list[str]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, sid: str) -> Session | None:
        return self._by_id.get(sid)

    def create(self, annotator: str) -> str | None:
        """A new session's id, or None when the table is full."""
        with self._lock:
            own = self._by_annotator[annotator]
            if len(own) >= self.per_annotator:
                self._by_id.pop(own.pop(0), None)
            elif len(self._by_id) >= self.limit:
                return None
            sid = secrets.token_urlsafe(32)
            self._by_id[sid] = Session(annotator)
            own.append(sid)
            return sid

    def drop(self, sid: str) -> None:
        with self._lock:
            session = self._by_id.pop(sid, None)
            if session is not None:
                own = self._by_annotator[session.annotator]
                own.remove(sid)
                if not own:
                    del self._by_annotator[session.annotator]
