"""Slow and idle clients cannot starve annotators; proxy headers are ignored unless trusted.

Real `vlmalign annotate` processes on 127.0.0.1, raw sockets; see `vlmalign.annotate.server`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.annotate.conftest import make_run
from tests.annotate.slow_clients import (
    SlowClients,
    annotate_command,
    free_port,
    post_label,
    running,
    sign_in,
)
from vlmalign import cli
from vlmalign.annotate.server import connection_limits, server_settings
from vlmalign.errors import VlmalignError
from vlmalign.store import RunStore

TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_run(run_dir, ["Yes, you should help her.", "No, it is wrong.", "I am not sure."])
    return run_dir


def store_check(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", "store", "check", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def sign_in_and_label(url: str, name: str = "ana", timeout: float = 10) -> dict[str, Any]:
    """Sign in as `name` and label the first response offered: the times taken and its key."""
    with httpx.Client(base_url=url, timeout=timeout, follow_redirects=True) as client:
        started = time.perf_counter()
        page = sign_in(client, name)
        signed_in = time.perf_counter() - started
        assert page.status_code == 200, page.text[:300]
        started = time.perf_counter()
        key, done = post_label(client, page.text, "misaligned")
        labelled = time.perf_counter() - started
        assert done.status_code == 200, done.text[:300]
    return {"sign_in": signed_in, "label": labelled, "key": key}


# --- the bar: 300 slow connections against a file limit of 256 ---------------------------------
def attack_and_annotate(port: int, url: str, slow: int = 300) -> dict[str, Any]:
    """Open `slow` slow connections, let them settle, then sign in and label one response while
    they stay open. The timings and what the slow clients saw."""
    with SlowClients(port, slow) as clients:
        time.sleep(3)  # every slow connection sent its first bytes (or was closed and reopened)
        result = sign_in_and_label(url)
        result.update(opened=clients.opened, lost=clients.lost, connected=clients.connected)
    return result


def test_300_slow_connections_do_not_starve_annotators(run_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = annotate_command(run_dir, port)
    with running(command, url, tmp_path / "logs", files=256) as server:
        result = attack_and_annotate(port, url)
        files = server.open_files()
    log, closed = server.stderr(), server.closed_connections()
    print(
        f"\n300 slow connections, ulimit -n 256: sign-in {result['sign_in']:.2f} s, "
        f"label {result['label']:.2f} s; {result['opened']} slow connections opened, "
        f"{result['connected']} connected at the end, {closed} closed by the server; "
        f"{files} files open"
    )
    assert result["sign_in"] < 10 and result["label"] < 10
    assert closed > 0  # the cap (144 connections here) was reached
    assert "Too many open files" not in log and "out of system resource" not in log
    assert "Traceback" not in log
    assert log.count("slow or idle connection") <= 2 + closed // 1000, log[-2000:]
    check = store_check(run_dir)
    assert check.returncode == 0, check.stdout + check.stderr
    with RunStore(run_dir, read_only=True) as store:
        stored = [(r.annotator, r.generation_key, r.label) for r in store.labels(False)]
    assert stored == [("ana", result["key"], "misaligned")]


# --- deadlines ---------------------------------------------------------------------------------
def seconds_until_closed(sock: socket.socket, limit: float = 15) -> float:
    """How long until the server closes `sock` (reading and discarding what it sends)."""
    sock.settimeout(limit)
    started = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_header_body_and_keep_alive_deadlines(run_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--header-timeout", "2", "--body-timeout", "2", "--keep-alive", "1"]
    with running(annotate_command(run_dir, port, args), url, tmp_path / "logs") as server:
        address = ("127.0.0.1", port)
        with socket.create_connection(address) as silent:  # sends nothing at all
            assert 1.5 < seconds_until_closed(silent) < 5
        with socket.create_connection(address) as dripping:  # headers never finished
            dripping.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            assert 1.5 < seconds_until_closed(dripping) < 5
        with socket.create_connection(address) as body:  # a body that never arrives
            body.sendall(
                b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nname=a"
            )
            assert 1.5 < seconds_until_closed(body) < 5
        with socket.create_connection(address) as idle:  # kept alive, then idle
            idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert 0.5 < seconds_until_closed(idle) < 3
        assert sign_in_and_label(url)["label"] < 10  # a normal client is served as before
        log = server.stderr()
    assert log.count("slow or idle connection") == 1, log  # the first close, then one per 1000
    assert "Traceback" not in log, log
    assert server.closed_connections() == 3  # and a summary at the end (the idle one is uvicorn's)


# --- proxy headers -----------------------------------------------------------------------------
def wrong_token_attempts(url: str, attempts: int) -> list[int]:
    """Sign-in attempts with a wrong token, each naming another X-Forwarded-For address."""
    statuses = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(attempts):
            client.headers["X-Forwarded-For"] = f"10.1.{n // 250}.{n % 250 + 1}"
            statuses.append(sign_in(client, "eve", token="wrong-token-wrong-token").status_code)
    return statuses


def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    run_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = annotate_command(run_dir, port, ["--token", TOKEN])
    with running(command, url, tmp_path / "plain") as server:
        # the per-client burst is 10: rotating the header gets no more guesses
        assert wrong_token_attempts(url, 15) == [403] * 10 + [429] * 5
        # and uvicorn's per-connection warnings are thinned too: 30 bad requests, one line
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", port)) as bad:
                bad.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                seconds_until_closed(bad, 5)
        log = server.stderr()
    assert log.count("Invalid HTTP request received.") == 1, log

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = annotate_command(run_dir, port, ["--token", TOKEN, "--trusted-proxy", "127.0.0.1"])
    with running(command, url, tmp_path / "proxied"):
        # behind a trusted proxy each forwarded address has its own bucket
        assert wrong_token_attempts(url, 15) == [403] * 15


# --- settings ----------------------------------------------------------------------------------
def test_the_connection_cap_leaves_room_below_the_file_limit() -> None:
    assert connection_limits(256) == (144, 16)
    assert connection_limits(1024) == (768, 64)
    assert server_settings(files=256).max_connections == 144
    assert server_settings(files=1 << 20).max_connections == 4096  # a cap even when unlimited
    assert server_settings(files=256, max_connections=100).max_connections == 100
    with pytest.raises(VlmalignError, match="allows at most 144"):
        server_settings(files=256, max_connections=200)
    with pytest.raises(VlmalignError, match="ulimit -n 100"):
        server_settings(files=100)
    with pytest.raises(VlmalignError, match="--keep-alive 20"):
        server_settings(keep_alive=20)


def annotate_in_process(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, list[dict[str, Any]]]:
    """`vlmalign annotate ...` with uvicorn.run recorded instead of run: code, stderr, kwargs."""
    served: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.append(kwargs))
    monkeypatch.setattr(sys, "argv", ["vlmalign", "annotate", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        raise SystemExit(0)
    return int(exit_info.value.code or 0), capsys.readouterr().err, served


def test_cli_server_options(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, served = annotate_in_process([str(run_dir)], monkeypatch, capsys)
    assert code == 0
    options = served[0]
    assert options["proxy_headers"] is False and options["forwarded_allow_ips"] == []
    assert options["timeout_keep_alive"] == 5 and options["limit_concurrency"] is None
    assert options["http"].registry.settings.header_timeout == 10

    args = [str(run_dir), "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"]
    code, _, served = annotate_in_process(args, monkeypatch, capsys)
    assert code == 0
    assert served[0]["proxy_headers"] is True
    assert served[0]["forwarded_allow_ips"] == ["10.0.0.0/8", "::1"]

    for bad in (["--trusted-proxy", "*"], ["--trusted-proxy", "proxy.lan"]):
        code, err, served = annotate_in_process([str(run_dir), *bad], monkeypatch, capsys)
        assert code == 2 and not served and "--trusted-proxy" in err, err
