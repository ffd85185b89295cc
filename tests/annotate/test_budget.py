"""`vlmalign annotate --budget N`: a seeded sample of N responses, stratified over conditions and
items, offered through the app; counts are checked by hand here, not by the sampler."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.annotate.conftest import local_client
from vlmalign import cli
from vlmalign.annotate.app import create_app
from vlmalign.annotate.queue import stratified_sample
from vlmalign.data.dataset import load_dataset
from vlmalign.store import GenerationRow, RunStore, generation_key

# Three conditions × 4 items × 5 samples = 60 responses.
CONDITIONS = [("base", "train", 0), ("base", "train", 1), ("finetuned", "train", 0)]
ITEMS = 4
SAMPLES = 5


def rows_for(
    conditions: list[tuple[str, str, int]], items: int, samples: int
) -> list[GenerationRow]:
    dataset = load_dataset("builtin:moral-vqa-40")
    rows = []
    for variant, split, shots in conditions:
        for item in dataset.split(split)[:items]:
            for sample in range(samples):
                prompt = f"{variant} {shots}-shot: {item.question}"
                key = generation_key(
                    model_fingerprint=variant,
                    adapter_hash=None,
                    image_sha256="img",
                    prompt=prompt,
                    sampling={},
                    seed=0,
                    sample_index=sample,
                )
                rows.append(
                    GenerationRow(
                        key,
                        variant,
                        "mini",
                        variant,
                        None,
                        dataset.sha256,
                        item.id,
                        split,
                        shots,
                        sample,
                        sample,
                        "img",
                        prompt,
                        "{}",
                        f"Response {sample} to {item.id}.",
                    )
                )
    return rows


@pytest.fixture
def big_run(tmp_path: Path) -> tuple[Path, list[GenerationRow]]:
    rows = rows_for(CONDITIONS, ITEMS, SAMPLES)
    with RunStore(tmp_path) as store:
        store.snapshot_dataset(load_dataset("builtin:moral-vqa-40"))
        run_id = store.start_run({"model": "mini"})
        store.add_generations(rows)
        store.add_run_generations(run_id, [r.key for r in rows])
        store.finish_run(run_id)
    return tmp_path, rows


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)


def sign_in(client: TestClient, name: str) -> str:
    page = client.get("/")
    response = client.post("/login", data={"name": name, "csrf": csrf_of(page.text)})
    assert response.status_code == 200
    return response.text


def label_all(client: TestClient, name: str) -> list[str]:
    """Label whatever the app offers until the finished page; the keys in the order offered."""
    html = sign_in(client, name)
    seen: list[str] = []
    while "All done" not in html:
        match = re.search(r'action="/r/([0-9a-f]{64})"', html)
        assert match, html
        seen.append(match.group(1))
        html = client.post(f"/r/{seen[-1]}", data={"label": "aligned", "csrf": csrf_of(html)}).text
        assert len(seen) <= 60
    return seen


def test_budget_20_offers_exactly_20_then_done(big_run: tuple[Path, list[GenerationRow]]) -> None:
    run_dir, rows = big_run
    client = local_client(create_app(run_dir, seed=5, budget=20))
    html = sign_in(client, "ana")
    assert "0 / 20 labelled" in html  # progress counts toward the sample, not all 60
    seen = label_all(client, "ana")
    assert len(seen) == len(set(seen)) == 20
    assert "You labelled 20 of the 20 responses offered" in client.get("/done").text
    # Stratified, counted independently: 20 over 3 conditions is 7, 7, 6; within a condition
    # its 6 or 7 responses spread over 4 items as 2/2/1/1 or 2/2/2/1.
    by_key = {r.key: r for r in rows}
    per_condition = Counter((by_key[k].variant, by_key[k].split, by_key[k].shots) for k in seen)
    assert set(per_condition) == set(CONDITIONS)
    assert sorted(per_condition.values()) == [6, 7, 7]
    for condition, count in per_condition.items():
        per_item = Counter(
            by_key[k].item_id
            for k in seen
            if (by_key[k].variant, by_key[k].split, by_key[k].shots) == condition
        )
        assert len(per_item) == ITEMS
        assert sorted(per_item.values()) == ([1, 1, 2, 2] if count == 6 else [1, 2, 2, 2])
    with RunStore(run_dir) as store:
        assert {r.generation_key for r in store.labels()} == set(seen)


def test_same_seed_same_sample_for_every_annotator(
    big_run: tuple[Path, list[GenerationRow]],
) -> None:
    run_dir = big_run[0]
    first = set(label_all(local_client(create_app(run_dir, seed=5, budget=20)), "ana"))
    # A restart with the same flags, another annotator: the same 20 responses.
    again = set(label_all(local_client(create_app(run_dir, seed=5, budget=20)), "ben"))
    assert again == first
    other = set(label_all(local_client(create_app(run_dir, seed=6, budget=20)), "cy"))
    assert len(other) == 20 and other != first


def test_default_seed_is_fixed(big_run: tuple[Path, list[GenerationRow]]) -> None:
    run_dir = big_run[0]
    first = set(label_all(local_client(create_app(run_dir, budget=9)), "ana"))
    assert set(label_all(local_client(create_app(run_dir, budget=9)), "ben")) == first
    assert len(first) == 9


def test_overlap_applies_within_the_sample(big_run: tuple[Path, list[GenerationRow]]) -> None:
    app = create_app(big_run[0], overlap=1, seed=2, budget=12)
    ana = label_all(local_client(app), "ana")
    assert len(ana) == 12
    assert label_all(local_client(app), "ben") == []  # K=1: the sample is covered


def test_budget_at_least_the_run_offers_everything(
    big_run: tuple[Path, list[GenerationRow]],
) -> None:
    seen = label_all(local_client(create_app(big_run[0], seed=1, budget=500)), "ana")
    assert sorted(seen) == sorted(r.key for r in big_run[1])


def test_sample_covers_every_condition_and_ignores_row_order() -> None:
    rows = rows_for(CONDITIONS, ITEMS, SAMPLES)
    three = stratified_sample(rows, 3, seed=0)
    by_key = {r.key: r for r in rows}
    assert {(by_key[k].variant, by_key[k].split, by_key[k].shots) for k in three} == set(CONDITIONS)
    assert stratified_sample(list(reversed(rows)), 20, seed=3) == stratified_sample(
        rows, 20, seed=3
    )
    # Conditions over the same items sample the same items first (paired comparisons).
    nine = stratified_sample(rows, 9, seed=4)
    items = [
        {
            by_key[k].item_id
            for k in nine
            if (by_key[k].variant, by_key[k].split, by_key[k].shots) == c
        }
        for c in CONDITIONS
    ]
    assert len(items[0]) == 3 and items[0] == items[1] == items[2]
    # A larger budget extends a smaller one's sample.
    assert stratified_sample(rows, 30, seed=3)[:20] == stratified_sample(rows, 20, seed=3)


def test_a_small_condition_gives_its_share_to_the_others() -> None:
    rows = rows_for(CONDITIONS[:2], ITEMS, SAMPLES) + rows_for(
        [("finetuned", "test", 0)], items=2, samples=1
    )
    sample = stratified_sample(rows, 20, seed=0)
    counts = Counter((r.variant, r.split, r.shots) for r in rows if r.key in set(sample))
    # 2 responses exist in the small condition; the other 18 split 9 and 9.
    assert counts == {CONDITIONS[0]: 9, CONDITIONS[1]: 9, ("finetuned", "test", 0): 2}
    with pytest.raises(ValueError):
        stratified_sample(rows, 0, seed=0)


def test_cli_says_how_many_are_offered(
    big_run: tuple[Path, list[GenerationRow]], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.append(app))
    runner = CliRunner()
    result = runner.invoke(cli.app, ["annotate", str(big_run[0]), "--budget", "20"])
    assert result.exit_code == 0, result.output
    assert "20 responses to label (a stratified sample of 60; --budget 20)" in result.output
    assert len(served[0].state.vlmalign.queue.keys) == 20
    everything = runner.invoke(cli.app, ["annotate", str(big_run[0]), "--budget", "60"])
    assert "60 responses to label (all of them" in everything.output
    zero = runner.invoke(cli.app, ["annotate", str(big_run[0]), "--budget", "0"])
    assert zero.exit_code == 2
