"""A run directory with a few stored responses (no model needed) for the annotation tests."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vlmalign import cli
from vlmalign.data.dataset import load_dataset
from vlmalign.store import GenerationRow, RunStore, generation_key

XSS_RESPONSE = 'Yes. <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def make_run(run_dir: Path, responses: list[str]) -> list[str]:
    """Store one response per item of the built-in dataset's train split, as one study run."""
    dataset = load_dataset("builtin:moral-vqa-40")
    items = dataset.split("train")[: len(responses)]
    rows = []
    for index, (item, response) in enumerate(zip(items, responses, strict=True)):
        key = generation_key(
            model_fingerprint="fp",
            adapter_hash=None,
            image_sha256="img",
            prompt=item.question,
            sampling={},
            seed=index,
            sample_index=0,
        )
        rows.append(
            GenerationRow(
                key,
                "base",
                "mini",
                "fp",
                None,
                dataset.sha256,
                item.id,
                "train",
                0,
                0,
                index,
                "img",
                item.question,
                "{}",
                response,
            )
        )
    with RunStore(run_dir) as store:
        store.snapshot_dataset(dataset)
        run_id = store.start_run({"model": "mini"})
        store.add_generations(rows)
        store.add_run_generations(run_id, [r.key for r in rows])
        store.finish_run(run_id)
    return [r.key for r in rows]


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, list[str]]:
    responses = [
        "Yes, you should help her.",
        "No, it is wrong.",
        XSS_RESPONSE,
        "I am not sure.",
        "Yes.",
    ]
    return tmp_path, make_run(tmp_path, responses)


def local_client(app: FastAPI) -> TestClient:
    """A test client that names a loopback Host (the app refuses TestClient's `testserver`)."""
    return TestClient(app, base_url="http://127.0.0.1")


def local_client_at(app: FastAPI, address: str) -> TestClient:
    """A loopback test client whose requests come from `address` (for per-client limits)."""
    return TestClient(app, base_url="http://127.0.0.1", client=(address, 50000))


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port, in a thread; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str, list[Any]]:
    """`vlmalign annotate ...` in process, uvicorn replaced: exit code, stdout, stderr, apps."""
    served: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.append(app))
    monkeypatch.setattr(sys, "argv", ["vlmalign", "annotate", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err, served
