"""Throughput against an OpenAI-compatible endpoint: the study's generation path (plan, image
data URLs, concurrent requests, each arrival written to a real store) against the local server
in its own process, answering after a fixed latency L. With C requests in flight the ideal rate
is C / L; the efficiency is the measured rate over that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.results import Measured

LATENCY_S = 0.1
CONCURRENCY = 32
KEY = "sk-benchmark"
KEY_ENV = "VLMALIGN_BENCHMARK_KEY"


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    """The local server in a child process, and its base URL."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.openai_server", "--port", "0"]
    command += ["--latency", str(latency_s), "--key", KEY, "--model", "bench"]
    child = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line.startswith("READY "):
        child.kill()
        raise RuntimeError(f"the local OpenAI server did not start: {line!r}")
    return child, line.removeprefix("READY ")


def small_dataset(folder: Path, items: int) -> Path:
    """`items` yes/no items, each over its own 64 x 64 PNG (a few hundred bytes): the requests
    cost the client and server little, so the rate measures concurrency."""
    from PIL import Image

    lines = []
    for number in range(items):
        image = folder / f"image-{number}.png"
        Image.new("RGB", (64, 64), (number % 256, 40, 200 - number % 200)).save(image)
        item = {
            "id": f"item-{number}",
            "image": image.name,
            "question": f"Should I help person number {number}?",
            "aligned_stance": "yes",
            "ideal_answer": "Yes, help them.",
            "misaligned_answer": "No, ignore them.",
            "split": "test",
        }
        lines.append(json.dumps(item))
    path = folder / "small.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def requests_per_second(url: str, dataset_source: str, samples: int) -> tuple[int, float]:
    """(requests, seconds) for every response of the dataset at 0 shots (both splits), through
    plan_tasks and generate_missing into a real store, one request per sample."""
    from vlmalign.config import Condition, StudyConfig
    from vlmalign.data.dataset import load_dataset
    from vlmalign.generation import generate_missing, plan_tasks
    from vlmalign.models.endpoint import EndpointSettings
    from vlmalign.models.openai_api import OpenAIChatModel
    from vlmalign.store import RunStore

    settings = EndpointSettings(
        base_url=url, api_key_env=KEY_ENV, max_concurrency=CONCURRENCY, use_n=False
    )
    model = OpenAIChatModel("bench", settings)
    config = StudyConfig(
        dataset=dataset_source,
        model="openai:bench",
        samples=samples,
        finetune=None,
        conditions=(Condition(split="train", shots=0), Condition(split="test", shots=0)),
        api=settings,
    )
    dataset = load_dataset(config.dataset)
    tasks = plan_tasks(dataset, model, config, "chat")
    with tempfile.TemporaryDirectory() as folder, RunStore(Path(folder)) as store:
        started = time.perf_counter()
        done = generate_missing(
            store, model, dataset, tasks, config.sampling, config.batch_size, progress=False
        )
        elapsed = time.perf_counter() - started
        stored = len(store.existing_keys(t.key for t in tasks))
    assert done == stored == len(tasks)
    return done, elapsed


def measure_api(quick: bool) -> Measured:
    items, samples = (100, 2) if quick else (300, 3)
    ideal = CONCURRENCY / LATENCY_S
    child, url = start_server(LATENCY_S)
    os.environ[KEY_ENV] = KEY
    try:
        # The built-in set's photos (100-800 KB each) as they are: a payload-bound figure. It
        # runs first, so the client's one-time imports are not in the figure that follows.
        photo_requests, photo_seconds = requests_per_second(url, "builtin:moral-vqa-40", 2)
        with tempfile.TemporaryDirectory() as folder:
            small = small_dataset(Path(folder), items)
            requests, seconds = requests_per_second(url, str(small), samples)
    finally:
        child.terminate()
        child.wait(timeout=10)
    rate = requests / seconds
    raw: dict[str, Any] = {
        "requests": requests,
        "concurrency": CONCURRENCY,
        "latency_s": LATENCY_S,
        "elapsed_s": round(seconds, 3),
        "requests_per_s": round(rate, 1),
        "ideal_requests_per_s": ideal,
        "photo_requests": photo_requests,
        "photo_requests_per_s": round(photo_requests / photo_seconds, 1),
        "what": "the study's generation path (plan_tasks + generate_missing into a RunStore) "
        "against benchmarks/openai_server.py in its own process; 64 x 64 PNGs, then the "
        "built-in set's photos (payload-bound: JSON and base64 of each photo on both sides)",
    }
    return Measured({"api_concurrency_efficiency": round(rate / ideal, 3)}, raw)
