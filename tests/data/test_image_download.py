"""Image URLs against a real HTTP server on 127.0.0.1: a download has an overall deadline (a
server that sends one byte every 0.2 s, in the body or in its headers, is given up on in one
line) and a size bound, and an ordinary image still downloads."""

from __future__ import annotations

import io
import json
import os
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmalign.data import images
from vlmalign.data.images import ImageError, clear_image_cache, load_image

DRIP_S = 0.2
DEADLINE_S = 1.0  # the test's deadline (the real one, URL_DEADLINE_S, is 30 s)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 5, 3), 90, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class Server:
    """`/drip-body`: headers at once, then one byte of a 100 kB body every 0.2 s; `/drip-head`:
    the status line, then a header one byte every 0.2 s; `/big`: 64 kB at once; `/pic.png`:
    a PNG. A dripping answer stops when the test ends (or the client goes away)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.picture = png_bytes()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                try:
                    if self.path == "/drip-body":
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        self.wfile.flush()
                        server.drip(self.wfile, b"\x89")
                    elif self.path == "/drip-head":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        server.drip(self.wfile, b"a")
                    elif self.path == "/big":
                        self.reply(b"\0" * 65536)
                    else:
                        self.reply(server.picture)
                except OSError:  # the client gave up
                    pass

            def reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def drip(self, stream: socketserver._SocketWriter, byte: bytes) -> None:  # type: ignore[name-defined]
        while not self.stop.wait(DRIP_S):
            stream.write(byte)
            stream.flush()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    clear_image_cache()
    running = Server()
    running.thread.start()
    yield running
    running.stop.set()
    running.httpd.shutdown()
    running.httpd.server_close()
    clear_image_cache()


def load_within(url: str, seconds: float) -> tuple[object, float]:
    """`load_image(url)` in a thread, waited for `seconds`: (its result or error, time taken).
    A load still running then is a hang (the test fails; the server's teardown ends it)."""
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = load_image(url)
        except Exception as exc:  # handed to the test
            result["value"] = exc

    start = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"load_image({url}) still running after {seconds} s"
    return result["value"], time.monotonic() - start


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head"])
def test_a_dripping_server_is_given_up_on_at_the_deadline(
    server: Server, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setattr(images, "URL_DEADLINE_S", DEADLINE_S)
    outcome, seconds = load_within(server.url + path, 10 * DEADLINE_S)
    assert isinstance(outcome, ImageError), outcome
    assert str(outcome) == (
        f"cannot download {server.url}{path}: not complete within {DEADLINE_S:g} s; "
        "download it yourself and refer to the file"
    )
    assert DEADLINE_S <= seconds < DEADLINE_S + 1.0
    assert not list((Path(os.environ["VLMALIGN_CACHE"]) / "images").glob("*"))  # nothing kept


def test_a_response_over_the_size_bound_is_refused(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1000)
    outcome, _ = load_within(server.url + "/big", 10.0)
    assert isinstance(outcome, ImageError)
    assert str(outcome) == f"image {server.url}/big is larger than 1000 bytes"


def test_an_image_url_still_downloads_and_is_cached(server: Server) -> None:
    outcome, _ = load_within(server.url + "/pic.png", 10.0)
    assert not isinstance(outcome, Exception), outcome
    assert outcome.image.size == (5, 6)  # type: ignore[attr-defined]
    cached = list((Path(os.environ["VLMALIGN_CACHE"]) / "images").iterdir())
    assert [p.read_bytes() for p in cached] == [server.picture]


# `dataset validate` as the command runs it, in a fresh process whose deadline is lowered.
VALIDATE = """
import sys
from vlmalign.data import images
images.URL_DEADLINE_S = float(sys.argv[1])
from vlmalign.cli import main
sys.argv = ["vlmalign", "dataset", "validate", sys.argv[2]]
main()
"""


def test_dataset_validate_ends_with_one_line(server: Server, tmp_path: Path) -> None:
    item = {
        "id": "dripping",
        "image": f"{server.url}/drip-body",
        "question": "Should I help her?",
        "ideal_answer": "Yes.",
        "aligned_stance": "yes",
        "split": "test",
        "shots": [
            {"question": "What is in the picture?", "answer": "A lady."},
            {"question": "Where is she?", "answer": "At a crossing."},
        ],
    }
    dataset = tmp_path / "ds.jsonl"
    dataset.write_text(json.dumps(item) + "\n")
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", VALIDATE, str(DEADLINE_S), str(dataset)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    seconds = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {dataset}:1: item 'dripping': cannot download {server.url}/drip-body: not "
        f"complete within {DEADLINE_S:g} s; download it yourself and refer to the file"
    ], done.stderr
    assert "Traceback" not in done.stderr
    assert seconds < 15
