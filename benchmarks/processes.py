"""Run a Python child process from the repository root and read the JSON line it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


class ChildFailed(RuntimeError):
    """A measured child process exited with an error."""


def last_json_line(stdout: str) -> dict[str, Any]:
    """The last line of `stdout` that is a JSON object (libraries may print before it)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    raise ValueError("the child printed no JSON object")


def run_child(
    arguments: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run `python ARGUMENTS` in the repository root; its JSON report and its wall seconds."""
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        tail = "\n".join(finished.stderr.splitlines()[-20:])
        raise ChildFailed(f"{' '.join(arguments)} exited {finished.returncode}:\n{tail}")
    return last_json_line(finished.stdout), seconds


def run_child_until_ready(
    arguments: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], float, float]:
    """Run `python ARGUMENTS` in the repository root; its first JSON report, the seconds until
    it printed it (launch to ready), and the seconds until it exited (teardown included)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:  # a file: a full pipe would block the child
        child = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert child.stdout is not None
        report: dict[str, Any] | None = None
        ready = 0.0
        for line in child.stdout:
            if line.strip().startswith("{") and report is None:
                ready = time.perf_counter() - started
                report = last_json_line(line)
        returncode = child.wait()
        wall = time.perf_counter() - started
        if returncode != 0 or report is None:
            errors.seek(0)
            tail = "\n".join(errors.read().splitlines()[-20:])
            raise ChildFailed(f"{' '.join(arguments)} exited {returncode}:\n{tail}")
    return report, ready, wall
