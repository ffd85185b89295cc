"""Real `vlmalign annotate` server processes and slow clients on raw sockets, for the tests of
`vlmalign.annotate.server` (test_slow_clients.py, test_soak.py). Nothing here patches the server.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

PARTIAL_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def file_limit(files: int) -> Callable[[], None]:
    """A `preexec_fn` giving the child process an open-file limit of `files`."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def closed_connections(self) -> int:
        """How many connections the server closed, by its log (so far, or in all once stopped)."""
        counts = re.findall(
            r"closed (\d+) slow or idle connections? (?:so far|in all)", self.stderr()
        )
        return int(counts[-1]) if counts else 0

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


def annotate_command(run_dir: Path, port: int, args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "vlmalign", "annotate", str(run_dir), "--port", str(port), *args]


@contextmanager
def running(command: list[str], url: str, logs: Path, files: int | None = None) -> Iterator[Server]:
    """`command` (a server listening at `url`) in a subprocess, stopped with Ctrl+C at the end;
    `files` sets its open-file limit."""
    logs.mkdir(parents=True, exist_ok=True)
    stderr_path = logs / "server.stderr"
    with (logs / "server.stdout").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            preexec_fn=None if files is None else file_limit(files),
        )
    server = Server(process, url, stderr_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"server exited: {server.stderr()[-2000:]}"
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class SlowClients:
    """`count` connections that each send part of a request's headers and then one more byte
    every `interval` seconds, never finishing them; a connection the server closes is opened
    again at the next byte (so `count` are kept trying). Runs in a thread. `lost` counts the
    connections that ended: closed by the server, or dropped by its kernel while waiting to be
    accepted."""

    def __init__(self, port: int, count: int, interval: float = 1.0) -> None:
        self.port, self.count, self.interval = port, count, interval
        self.selector = selectors.DefaultSelector()
        self.sockets: dict[socket.socket, bool] = {}  # socket -> connected and prefix sent
        self.lost = 0
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in list(self.sockets):
            self._forget(sock)
        self.selector.close()

    @property
    def connected(self) -> int:
        return sum(self.sockets.values())

    def _open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            return
        self.sockets[sock] = False
        self.selector.register(sock, selectors.EVENT_WRITE)
        self.opened += 1

    def _forget(self, sock: socket.socket) -> None:
        self.sockets.pop(sock, None)
        with suppress(KeyError, ValueError):
            self.selector.unregister(sock)
        sock.close()

    def _lost(self, sock: socket.socket) -> None:
        self.lost += 1
        self._forget(sock)

    def _run(self) -> None:
        for _ in range(self.count):
            self._open()
        next_drip = time.monotonic() + self.interval
        while not self._stop.is_set():
            timeout = max(0.0, min(0.1, next_drip - time.monotonic()))
            for key, _events in self.selector.select(timeout):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if not self.sockets.get(sock, True):  # connect finished (or failed)
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        self._lost(sock)
                        continue
                    try:
                        sock.send(PARTIAL_REQUEST)
                    except OSError:
                        self._lost(sock)
                        continue
                    self.sockets[sock] = True
                    self.selector.modify(sock, selectors.EVENT_READ)
                else:  # readable: the server closed it (or answered, which it should not)
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        self._lost(sock)
            if time.monotonic() >= next_drip:
                next_drip += self.interval
                for sock, ready in list(self.sockets.items()):
                    if ready:
                        try:
                            sock.send(b"a")
                        except OSError:
                            self._lost(sock)
                for _ in range(self.count - len(self.sockets)):
                    self._open()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')
KEY = re.compile(r'action="/r/([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html[:300]
    return match.group(1)


def key_of(html: str) -> str | None:
    match = KEY.search(html)
    return match.group(1) if match else None


def sign_in(client: httpx.Client, name: str, token: str | None = None) -> httpx.Response:
    """The sign-in page, then its form: the response after the redirects."""
    page = client.get("/")
    page.raise_for_status()
    data = {"name": name, "csrf": csrf_of(page.text)}
    if token is not None:
        data["token"] = token
    return client.post("/login", data=data)


def post_label(client: httpx.Client, html: str, label: str) -> tuple[str, httpx.Response]:
    """Label the response shown in `html`: its key and the response after the redirects."""
    key = key_of(html)
    assert key, html[:300]
    return key, client.post(f"/r/{key}", data={"label": label, "csrf": csrf_of(html)})
