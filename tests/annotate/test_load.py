"""Load: a real uvicorn server on loopback, 8 annotators labelling at once through httpx.

Asserts correctness only (every label stored once, none lost); the latencies are printed
(`pytest -s`) and recorded in docs/annotate.md, never asserted.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.annotate.conftest import serve
from vlmalign.annotate.app import create_app
from vlmalign.data.dataset import load_dataset
from vlmalign.store import GenerationRow, LabelRow, RunStore, generation_key

pytestmark = pytest.mark.slow

ANNOTATORS = 8
LABELS_IN_ALL = 500
RESPONSES = 100  # each annotator labels 62 or 63 of them


def make_big_run(run_dir: Path, responses: int, bulk_labels: int) -> list[str]:
    """`responses` stored responses over the built-in items, and `bulk_labels` labels of them
    by other annotators (as after a long labelling campaign)."""
    dataset = load_dataset("builtin:moral-vqa-40")
    items = dataset.split("train")
    rows = []
    for index in range(responses):
        item = items[index % len(items)]
        key = generation_key(
            model_fingerprint="fp",
            adapter_hash=None,
            image_sha256="img",
            prompt=item.question,
            sampling={},
            seed=index,
            sample_index=0,
        )
        fields = (key, "base", "mini", "fp", None, dataset.sha256, item.id, "train", 0, 0)
        rows.append(GenerationRow(*fields, index, "img", item.question, "{}", f"Response {index}."))
    keys = [r.key for r in rows]
    with RunStore(run_dir) as store:
        store.snapshot_dataset(dataset)
        run_id = store.start_run({"model": "mini"})
        store.add_generations(rows)
        store.add_run_generations(run_id, keys)
        store.finish_run(run_id)
        store.add_labels(
            [
                LabelRow(keys[n % responses], f"bulk-{n // responses}", "unsure", "", "t")
                for n in range(bulk_labels)
            ]
        )
    return keys


def annotate(
    url: str, name: str, quota: int, done: list[tuple[str, str, str]], latencies: list[float]
) -> None:
    """Sign in and label `quota` responses, recording (annotator, key, label) once stored."""
    labels = ("aligned", "misaligned", "unsure")
    with httpx.Client(base_url=url, timeout=60, follow_redirects=True) as client:
        page = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        html = client.post("/login", data={"name": name, "csrf": csrf.group(1)}).text
        for n in range(quota):
            key = re.search(r'action="/r/([0-9a-f]{64})"', html)
            csrf = re.search(r'name="csrf" value="([^"]+)"', html)
            assert key and csrf, html[:300]
            label = labels[n % 3]
            started = time.perf_counter()
            response = client.post(
                f"/r/{key.group(1)}", data={"label": label, "csrf": csrf.group(1)}
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:300]
            done.append((name, key.group(1), label))
            html = response.text


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


@pytest.mark.parametrize("bulk_labels", [0, 50_000])
def test_eight_annotators_at_once_lose_and_duplicate_nothing(
    tmp_path: Path, bulk_labels: int
) -> None:
    keys = make_big_run(tmp_path, RESPONSES, bulk_labels)
    app = create_app(tmp_path, seed=11)
    names = [f"annotator-{n}" for n in range(ANNOTATORS)]
    quotas = [
        LABELS_IN_ALL // ANNOTATORS + (n < LABELS_IN_ALL % ANNOTATORS) for n in range(ANNOTATORS)
    ]
    done: list[tuple[str, str, str]] = []
    latencies: list[float] = []
    errors: list[BaseException] = []

    def worker(name: str, quota: int) -> None:
        try:
            annotate(url, name, quota, done, latencies)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    with serve(app) as url:
        started = time.perf_counter()
        threads = [
            threading.Thread(target=worker, args=(name, quota))
            for name, quota in zip(names, quotas, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        elapsed = time.perf_counter() - started
    assert not errors, errors[0]
    assert not any(thread.is_alive() for thread in threads)
    print(
        f"\n{bulk_labels} labels before: {len(latencies)} labels by {ANNOTATORS} annotators in "
        f"{elapsed:.1f} s; label + next page p50 {percentile(latencies, 50) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 95) * 1000:.0f} ms"
    )
    assert len(done) == LABELS_IN_ALL
    with RunStore(tmp_path) as store:
        stored = [r for r in store.labels(latest_only=False) if not r.annotator.startswith("bulk")]
        bulk = len(store.labels(latest_only=False)) - len(stored)
    assert bulk == bulk_labels
    assert sorted((r.annotator, r.generation_key, r.label) for r in stored) == sorted(done)
    pairs = [(r.annotator, r.generation_key) for r in stored]
    assert len(set(pairs)) == len(pairs) == LABELS_IN_ALL  # nobody was offered a response twice
    assert {r.generation_key for r in stored} <= set(keys)
