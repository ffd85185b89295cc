"""Study generation throughput: the real study path against the naive loop, same prompts.

The study path is `vlmalign.generation.generate_missing` into a temporary run store, with the
default study's sampling, samples per prompt and batch size: what `vlmalign study` does. The
naive loop (`naive.py`) answers the same tasks (same prompts, same seeds) one at a time. Both
run in this process on one loaded model, so their ratio is measured on one machine at one time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.naive import naive_response
from benchmarks.results import Measured
from vlmalign.config import StudyConfig
from vlmalign.data.dataset import Dataset
from vlmalign.data.images import load_image
from vlmalign.generation import Task, generate_missing, plan_tasks
from vlmalign.models.base import GenerationRequest
from vlmalign.sampling import SamplingParams
from vlmalign.store import RunStore

T = TypeVar("T")

GREEDY_PROMPTS = 4  # one per base condition


def stratified(groups: Sequence[Sequence[T]], total: int) -> list[T]:
    """`total` members spread over the groups as evenly as possible (earlier groups take the
    remainder), each group's share evenly spaced through it; deterministic."""
    if total <= 0 or not groups:
        return []
    shares = [total // len(groups) + (i < total % len(groups)) for i in range(len(groups))]
    # A group smaller than its share gives what it has; the rest goes unasked.
    picked: list[T] = []
    for group, share in zip(groups, shares, strict=True):
        share = min(share, len(group))
        picked += [group[(i * len(group)) // share] for i in range(share)]
    return picked


def prompt_groups(tasks: Sequence[Task]) -> list[list[list[Task]]]:
    """Tasks grouped by prompt (item under a condition), prompts grouped by condition, in
    plan order."""
    by_condition: dict[tuple[str, int], dict[str, list[Task]]] = {}
    for task in tasks:
        prompts = by_condition.setdefault((task.split, task.shots), {})
        prompts.setdefault(task.item.id, []).append(task)
    return [list(prompts.values()) for prompts in by_condition.values()]


def chosen_tasks(tasks: Sequence[Task], prompts: int | None) -> list[Task]:
    """Every sample of a stratified subset of the prompts (all of them when `prompts` is None)."""
    groups = prompt_groups(tasks)
    if prompts is None:
        return list(tasks)
    return [task for prompt in stratified(groups, prompts) for task in prompt]


def _token_count(model: Any, responses: Sequence[str]) -> int:
    """New tokens, counted the same way for both paths: each response re-tokenized."""
    return sum(len(model.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)


def _rates(model: Any, responses: Sequence[str], seconds: float) -> dict[str, Any]:
    tokens = _token_count(model, responses)
    return {
        "responses": len(responses),
        "new_tokens": tokens,
        "seconds": round(seconds, 3),
        "responses_per_s": len(responses) / seconds,
        "new_tokens_per_s": tokens / seconds,
    }


def study_path(
    model: Any, dataset: Dataset, tasks: Sequence[Task], params: SamplingParams, batch_size: int
) -> tuple[list[str], float]:
    """Responses in task order from `generate_missing` into an empty store, and its seconds."""
    with tempfile.TemporaryDirectory() as folder, RunStore(Path(folder)) as store:
        started = time.perf_counter()
        generate_missing(store, model, dataset, tasks, params, batch_size, progress=False)
        seconds = time.perf_counter() - started
        stored = {row.key: row.response for row in store.generations([t.key for t in tasks])}
    return [stored[t.key] for t in tasks], seconds


def naive_path(
    model: Any, dataset: Dataset, tasks: Sequence[Task], params: SamplingParams
) -> tuple[list[str], float]:
    started = time.perf_counter()
    responses = [
        naive_response(
            model, load_image(t.item.image, dataset.base_dir).image, t.prompt_text, t.seed, params
        )
        for t in tasks
    ]
    return responses, time.perf_counter() - started


def greedy_check(model: Any, dataset: Dataset, config: StudyConfig, prompts: int) -> dict[str, Any]:
    """Both paths at temperature 0 on a few prompts (one sample each): they must agree."""
    greedy = config.model_copy(update={"sampling": SamplingParams(temperature=0.0), "samples": 1})
    planned = plan_tasks(dataset, model, greedy, model.default_prompt_format)
    tasks = chosen_tasks(planned, prompts)
    optimized, _ = study_path(model, dataset, tasks, greedy.sampling, greedy.batch_size)
    naive, _ = naive_path(model, dataset, tasks, greedy.sampling)
    differing = [
        {"item": t.item.id, "shots": t.shots, "study_path": a, "naive": b}
        for t, a, b in zip(tasks, optimized, naive, strict=True)
        if a != b
    ]
    return {
        "prompts": len(tasks),
        "identical": len(tasks) - len(differing),
        "differing": differing,
    }


def measure_generation(model: Any, dataset: Dataset, prompts: int | None) -> Measured:
    """Throughput of both paths on the default study's base conditions (`prompts` of them,
    stratified across conditions; None = all), and the greedy cross-check."""
    config = StudyConfig()
    planned = plan_tasks(dataset, model, config, model.default_prompt_format)
    tasks = chosen_tasks(planned, prompts)
    first = tasks[0]
    warm_up = GenerationRequest(
        load_image(first.item.image, dataset.base_dir).image, first.prompt_text, 0
    )
    model.generate([warm_up], config.sampling)  # first-call costs belong to neither path

    optimized, optimized_s = study_path(model, dataset, tasks, config.sampling, config.batch_size)
    naive, naive_s = naive_path(model, dataset, tasks, config.sampling)
    study_rates = _rates(model, optimized, optimized_s)
    naive_rates = _rates(model, naive, naive_s)
    speedup = study_rates["responses_per_s"] / naive_rates["responses_per_s"]
    raw = {
        "prompts": len({(t.split, t.shots, t.item.id) for t in tasks}),
        "samples": config.samples,
        "conditions": sorted({f"{t.split}/{t.shots}-shot" for t in tasks}),
        "sampling": config.sampling.model_dump(),
        "batch_size": config.batch_size,
        "prompt_format": model.default_prompt_format,
        "study_path": study_rates,
        "naive": naive_rates,
        "new_tokens_speedup": study_rates["new_tokens_per_s"] / naive_rates["new_tokens_per_s"],
        "sampled_identical": sum(a == b for a, b in zip(optimized, naive, strict=True)),
        "greedy_check": greedy_check(model, dataset, config, GREEDY_PROMPTS),
    }
    return Measured({"generation_speedup": speedup}, raw)
