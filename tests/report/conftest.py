"""A synthetic but complete run directory: every condition of the study, two judges with
verdicts, and human labels by three annotators — built straight into a real store."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from vlmalign.data.dataset import load_dataset
from vlmalign.data.schema import Split
from vlmalign.hashing import stable_hash
from vlmalign.store import (
    GenerationRow,
    JudgmentRow,
    LabelRow,
    RunStore,
    generation_key,
)

CONDITIONS: list[tuple[str, Split, int]] = [
    ("base", "train", 0),
    ("base", "train", 1),
    ("base", "train", 2),
    ("base", "test", 0),
    ("finetuned", "train", 0),
    ("finetuned", "test", 0),
]
# Chance that a response is aligned, per condition (finetuned clearly better than base).
ALIGNED_RATE = {
    ("base", "train", 0): 0.3,
    ("base", "train", 1): 0.45,
    ("base", "train", 2): 0.4,
    ("base", "test", 0): 0.3,
    ("finetuned", "train", 0): 0.95,
    ("finetuned", "test", 0): 0.6,
}
JUDGE_CONFIGS = {"stance": {"version": 2}, "ethics": {"head": "test"}}


def build_run(
    run_dir: Path,
    samples: int = 2,
    seed: int = 0,
    annotators: tuple[str, ...] = ("ana", "ben", "cy"),
    endpoint: Callable[[GenerationRow], GenerationRow] | None = None,
) -> list[GenerationRow]:
    """`endpoint` adds to each response what a remote endpoint would report about it (its
    tokens, finish reason, refusal); without it, responses are an in-process model's."""
    rng = random.Random(seed)
    dataset = load_dataset("builtin:moral-vqa-40")
    rows: list[GenerationRow] = []
    judgments: list[JudgmentRow] = []
    truth: dict[str, bool] = {}
    for variant, split, shots in CONDITIONS:
        for item in dataset.split(split):
            for sample in range(samples):
                aligned = rng.random() < ALIGNED_RATE[(variant, split, shots)]
                stance: str = (
                    item.aligned_stance
                    if aligned
                    else ("no" if item.aligned_stance == "yes" else "yes")
                )
                if rng.random() < 0.05:
                    stance = "unclear"
                response = f"{stance.capitalize()}. <b>{item.id}</b> sample {sample}"
                prompt = (
                    f"<|image|>Q: {item.question} A:"
                    if shots == 0
                    else f"<|image|>{shots} shots Q: {item.question} A:"
                )
                key = generation_key(
                    model_fingerprint=variant,
                    adapter_hash=None,
                    image_sha256=item.id,
                    prompt=prompt,
                    sampling={},
                    seed=seed,
                    sample_index=sample,
                )
                row = GenerationRow(
                    key,
                    variant,
                    "mini",
                    "fp",
                    None,
                    dataset.sha256,
                    item.id,
                    split,
                    shots,
                    sample,
                    seed,
                    item.id,
                    prompt,
                    "{}",
                    response,
                )
                row = endpoint(row) if endpoint else row
                rows.append(row)
                if row.refused:  # every judge's verdict on a refusal: unclear, "refused"
                    stance = "refused"
                unclear = stance in ("unclear", "refused")
                stance_aligned = None if unclear else stance == item.aligned_stance
                truth[key] = bool(stance_aligned)
                judgments.append(
                    JudgmentRow(
                        key,
                        "stance",
                        stable_hash(JUDGE_CONFIGS["stance"]),
                        stance_aligned,
                        None,
                        {"reason": "test"},  # the report reads what the judge read from `answer`
                        answer=stance,
                        explanation=f"The answer says {stance}.",
                    )
                )
                ethics = rng.random() < 0.8  # over-estimates, like the paper's classifier
                judgments.append(
                    JudgmentRow(
                        key,
                        "ethics",
                        stable_hash(JUDGE_CONFIGS["ethics"]),
                        None if row.refused else ethics,
                        None if row.refused else 0.5,
                        {},
                        answer="refused" if row.refused else None,
                    )
                )
    labels = []
    for key, aligned in list(truth.items())[::3]:  # humans label every third response
        for index, annotator in enumerate(annotators):
            agree = rng.random() < 0.85 or index == 0
            label = ("aligned" if aligned else "misaligned") if agree else "unsure"
            labels.append(LabelRow(key, annotator, label, "", "2026-01-01T00:00:00+00:00"))
    with RunStore(run_dir) as store:
        store.snapshot_dataset(dataset)
        run_id = store.start_run(
            {
                "model": "mini",
                "dataset": "builtin:moral-vqa-40",
                "samples_per_prompt": samples,
                "prompt_format": "chat",
                "judges": JUDGE_CONFIGS,
            }
        )
        store.add_generations(rows)
        store.add_judgments(judgments)
        store.add_labels(labels)
        store.add_run_generations(run_id, [r.key for r in rows])
        store.finish_run(run_id)
    return rows


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run-a"
    build_run(run_dir)
    return run_dir


@pytest.fixture
def second_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run-b"
    build_run(run_dir, samples=1, seed=1, annotators=("ana", "ben"))
    return run_dir
