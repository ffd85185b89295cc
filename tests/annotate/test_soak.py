"""Soak: 8 annotators label for 2 minutes while 500 slow connections stay open (slow, ~2.5 min).

A real `vlmalign annotate` process with an open-file limit of 512 (a cap of 352 connections, so
the slow connections are both timed out and closed at the cap), 8 httpx clients in threads and
the slow connections on raw sockets. Afterwards the store holds exactly the labels the clients
were told were stored (HTTP 200 after the redirects), and `store check` passes. The counts are
printed (`pytest -s`) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.annotate.slow_clients import (
    SlowClients,
    annotate_command,
    free_port,
    key_of,
    post_label,
    running,
    sign_in,
)
from tests.annotate.test_load import make_big_run
from vlmalign.store import RunStore

pytestmark = pytest.mark.slow

ANNOTATORS = 8
SECONDS = 120
SLOW_CONNECTIONS = 500
RESPONSES = 4000  # more than any annotator labels in the time


def percentile(seconds: list[float], q: int) -> float:
    """The q-th percentile in milliseconds."""
    return statistics.quantiles(seconds, n=100)[q - 1] * 1000


def label_until(
    url: str,
    name: str,
    until: float,
    told: list[tuple[str, str, str]],
    errors: list[str],
    latencies: list[float],
) -> None:
    """Sign in as `name` and label responses until `until`; record each label the server
    confirmed, each failed request, and how long each label took (with the next page)."""
    labels = ("aligned", "misaligned", "unsure")
    with httpx.Client(base_url=url, timeout=30, follow_redirects=True) as client:
        page = sign_in(client, name)
        assert page.status_code == 200, page.text[:300]
        html, n = page.text, 0
        while time.monotonic() < until and key_of(html):
            label = labels[n % 3]
            n += 1
            started = time.perf_counter()
            try:
                key, response = post_label(client, html, label)
            except httpx.HTTPError as exc:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                html = client.get("/next").text
                continue
            if response.status_code != 200:
                errors.append(f"{name}: HTTP {response.status_code}")
                html = client.get("/next").text
                continue
            latencies.append(time.perf_counter() - started)
            told.append((name, key, label))
            html = response.text


def test_eight_annotators_for_two_minutes_beside_500_slow_connections(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    make_big_run(run_dir, RESPONSES, 0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    told: list[tuple[str, str, str]] = []
    errors: list[str] = []
    latencies: list[float] = []
    failures: list[BaseException] = []

    def annotator(name: str, until: float) -> None:
        try:
            label_until(url, name, until, told, errors, latencies)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    command = annotate_command(run_dir, port, ["--seed", "3"])
    with running(command, url, tmp_path / "logs", files=512) as server:
        with SlowClients(port, SLOW_CONNECTIONS) as slow:
            time.sleep(3)
            until = time.monotonic() + SECONDS
            threads = [
                threading.Thread(target=annotator, args=(f"annotator-{n}", until))
                for n in range(ANNOTATORS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=SECONDS + 60)
            opened = slow.opened
        files = server.open_files()
    log, closed = server.stderr(), server.closed_connections()
    assert not failures, failures[0]
    assert not any(thread.is_alive() for thread in threads)
    per_annotator = Counter(name for name, _, _ in told)
    print(
        f"\nsoak: {len(told)} labels confirmed in {SECONDS} s by {ANNOTATORS} annotators "
        f"(fewest {min(per_annotator.values())}, most {max(per_annotator.values())}), "
        f"{len(errors)} failed requests; label + next page p50 {percentile(latencies, 50):.0f} "
        f"ms, p95 {percentile(latencies, 95):.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"{opened} slow connections opened, {closed} closed by the server; {files} files open "
        "at the end (limit 512)"
    )
    assert not errors, errors[:5]
    assert len(per_annotator) == ANNOTATORS and min(per_annotator.values()) > 50
    assert closed > SLOW_CONNECTIONS  # deadlines and the cap were at work throughout
    assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]
    assert log.count("slow or idle connection") <= 2 + closed // 1000, log[-3000:]

    check = subprocess.run(
        [sys.executable, "-m", "vlmalign", "store", "check", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with RunStore(run_dir, read_only=True) as store:
        stored = [(r.annotator, r.generation_key, r.label) for r in store.labels(False)]
    assert Counter(stored) == Counter(told)  # every confirmed label, and nothing else
    assert len(set(stored)) == len(stored)  # nobody was offered a response twice
