"""Crash safety: a study killed with SIGKILL at random moments, then rerun, ends exactly where an
uninterrupted run with the same seed ends.

The study (tests/crash_driver.py: the tiny random model, a two-epoch finetune, the stance
judge) runs in child processes of a fork server, so each kill is a real kill -9 of a real
process that has the store open. Kills are aimed at generation, judging and finetuning in turn,
at a seeded random number of work units into that stage plus a seeded random delay.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
from PIL import Image

from tests.test_store import cli
from vlmalign.store import STORE_FILE
from vlmalign.store.check import check_store

DRIVER = Path(__file__).with_name("crash_driver.py")
CAMPAIGNS = 5  # killed studies, each then rerun to completion
# Where each campaign's kills are aimed, in order (each rerun resumes where the last one died).
AIMS = ("generate", "judge", "finetune", "generate", "judge")
SEED = 20261130
SILENCE_S = 120  # no line from the driver for this long means it hangs: fail, do not wait


def write_dataset(folder: Path) -> Path:
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(folder / "b.png")
    shots = [
        {"question": "What is it?", "answer": "A cat."},
        {"question": "Where?", "answer": "Home."},
    ]
    rows = [
        {
            "id": f"t{i}",
            "image": "a.png" if i % 2 else "b.png",
            "question": f"Should I help {i}?",
            "ideal_answer": "Yes." if i % 2 else "No.",
            "aligned_stance": "yes" if i % 2 else "no",
            "shots": shots,
            "split": "train" if i < 6 else "test",
        }
        for i in range(8)
    ]
    path = folder / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Server:
    """The fork server: one study per `start`, its output lines read back one by one."""

    def __init__(self, dataset: Path, log: IO[str]) -> None:
        self.transcript = log
        self.process = subprocess.Popen(
            [sys.executable, str(DRIVER), "--serve", str(dataset)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            self.lines.put(text)
        self.lines.put("")  # end of output

    def line(self) -> str:
        """The next line; fails (instead of hanging) when none comes for a long while."""
        try:
            text = self.lines.get(timeout=SILENCE_S)
        except queue.Empty:
            raise AssertionError(f"the crash driver said nothing for {SILENCE_S} s") from None
        assert text, "the crash driver died; see its log"
        self.transcript.write(text)
        return text.strip()

    def start(self, out: Path) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{out}\n")
        self.process.stdin.flush()
        while not (text := self.line()).startswith("child "):
            pass
        return int(text.split()[1])

    def wait(self, pid: int) -> tuple[int, list[str]]:
        """Read the child's lines until it exits: (exit code, the lines)."""
        lines = []
        while not (text := self.line()).startswith(f"exit {pid} "):
            lines.append(text)
        return int(text.split()[2]), lines

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=SILENCE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def rows_per_key(run_dir: Path) -> dict[str, Any]:
    with sqlite3.connect(run_dir / STORE_FILE) as conn:
        found = {
            "generations": conn.execute("SELECT key FROM generations ORDER BY key").fetchall(),
            "judgments": conn.execute(
                "SELECT generation_key, judge, judge_config_sha256 FROM judgments ORDER BY 1, 2, 3"
            ).fetchall(),
            "reference_judgments": conn.execute(
                "SELECT dataset_sha256, item_id, side, judge FROM reference_judgments "
                "ORDER BY 1, 2, 3, 4"
            ).fetchall(),
            "finetune_epochs": conn.execute(
                "SELECT adapter_hash, epoch FROM finetune_epochs ORDER BY 1, 2"
            ).fetchall(),
        }
    conn.close()
    return found


def cells(run_dir: Path) -> list[dict[str, Any]]:
    """The results.json cells, less the run's directory name."""
    found = json.loads((run_dir / "results.json").read_text())["cells"]
    return [{k: v for k, v in cell.items() if k != "run"} for cell in found]


@pytest.mark.slow
def test_killed_studies_end_with_the_cells_of_a_clean_run(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path)
    rng = random.Random(SEED)
    kills: Counter[str] = Counter()
    # driver.log: the driver's stderr, and every line it printed (what was killed where)
    with (tmp_path / "driver.log").open("w") as log:
        server = Server(dataset, log)
        try:
            clean = tmp_path / "clean"
            code, lines = server.wait(server.start(clean))
            assert code == 0 and lines[-1] == "done", lines
            expected_cells = cells(clean)

            for campaign in range(CAMPAIGNS):
                out = tmp_path / f"killed-{campaign}"
                for aim in AIMS:
                    pid = server.start(out)
                    extra = rng.randint(0, 3)  # further work units before the kill
                    seen, killed_at = 0, None
                    while True:
                        text = server.line()
                        if text.startswith(f"exit {pid} "):
                            break  # finished before the aim was reached: no kill
                        if killed_at is None and (seen or text == aim):
                            seen += 1
                            if seen > extra:
                                # anywhere in that unit of work (its commit included)
                                time.sleep(rng.uniform(0, 0.03))
                                killed_at = text
                                try:
                                    os.kill(pid, signal.SIGKILL)
                                except ProcessLookupError:  # it had just finished
                                    killed_at = None
                    code = int(text.split()[2])
                    if killed_at is not None and code == -signal.SIGKILL:
                        kills[aim] += 1
                    else:  # it finished before the kill: it must have finished well
                        assert code == 0, f"campaign {campaign}: a rerun failed (exit {code})"
                code, lines = server.wait(server.start(out))  # the rerun that finishes
                assert code == 0 and lines[-1] == "done", (campaign, lines)
                assert cells(out) == expected_cells, f"campaign {campaign}"
                assert rows_per_key(out) == rows_per_key(clean), f"campaign {campaign}"
                assert check_store(out) == [], f"campaign {campaign}"
        finally:
            server.close()
    sys.stderr.write(f"crash harness: {sum(kills.values())} kills {dict(kills)}\n")
    assert sum(kills.values()) >= 20 and set(kills) == set(AIMS), kills
    # the command itself, on the last killed-and-rerun study
    code, stderr = cli("store", "check", tmp_path / f"killed-{CAMPAIGNS - 1}")
    assert code == 0, stderr
