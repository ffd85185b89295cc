"""Study orchestration: plan -> generate what is missing -> judge what is missing -> summarise."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from vlmalign.config import StudyConfig
from vlmalign.data.dataset import Dataset, check_shots, load_dataset
from vlmalign.data.images import load_image
from vlmalign.data.schema import Item
from vlmalign.judges.base import Judge, JudgeInput
from vlmalign.judges.registry import build_judge, judge_config_hash
from vlmalign.models.base import GenerationRequest, VisionLanguageModel
from vlmalign.models.registry import load_model
from vlmalign.prompts import PromptFormat, build_prompt, condition_name
from vlmalign.provenance import environment
from vlmalign.report.tables import Cell, summarize, write_report
from vlmalign.sampling import SamplingParams, derive_seed
from vlmalign.store import GenerationRow, JudgmentRow, RunStore, generation_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One response to obtain: an item asked under a condition, one sample."""

    item: Item
    variant: str
    split: str
    shots: int
    sample_index: int
    seed: int
    prompt_text: str
    image_sha256: str
    key: str


@dataclass
class StudyResult:
    config: StudyConfig
    cells: list[Cell]
    provenance: dict[str, Any]
    generated: int = 0
    reused: int = 0
    judged: dict[str, int] = field(default_factory=dict)


def validate_for_study(config: StudyConfig) -> Dataset:
    """Load the dataset and check every condition can be asked (before anything is written)."""
    dataset = load_dataset(config.dataset)
    for condition in config.conditions:
        check_shots(dataset, condition.shots, condition.split)
    return dataset


def plan_tasks(
    dataset: Dataset,
    model: VisionLanguageModel,
    config: StudyConfig,
    prompt_format: PromptFormat,
    variant: str = "base",
) -> list[Task]:
    tasks = []
    sampling = config.sampling.key()
    for condition in config.conditions:
        label = condition_name(condition.split, condition.shots)
        for item in dataset.split(condition.split):
            prompt_text = model.render_prompt(build_prompt(item, condition.shots), prompt_format)
            image_sha = load_image(item.image, dataset.base_dir).sha256
            for sample in range(config.samples):
                seed = derive_seed(config.seed, item.id, label, sample)
                key = generation_key(
                    model_fingerprint=model.fingerprint(),
                    adapter_hash=model.adapter_hash(),
                    image_sha256=image_sha,
                    prompt=prompt_text,
                    sampling=sampling,
                    seed=seed,
                    sample_index=sample,
                )
                tasks.append(
                    Task(
                        item,
                        variant,
                        condition.split,
                        condition.shots,
                        sample,
                        seed,
                        prompt_text,
                        image_sha,
                        key,
                    )
                )
    return tasks


def generate_missing(
    store: RunStore,
    model: VisionLanguageModel,
    dataset: Dataset,
    tasks: Sequence[Task],
    params: SamplingParams,
    batch_size: int,
    progress: bool = True,
) -> int:
    """Generate every task not yet in the store; each batch is committed on its own."""
    done = store.existing_keys(t.key for t in tasks)
    todo = [t for t in dict((t.key, t) for t in tasks).values() if t.key not in done]
    # Similar lengths together: less padding. Results do not depend on batching.
    todo.sort(key=lambda t: len(t.prompt_text))
    sampling_json = params.model_dump_json()
    with tqdm(total=len(todo), desc="generate", unit="resp", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            requests = [
                GenerationRequest(
                    load_image(t.item.image, dataset.base_dir).image, t.prompt_text, t.seed
                )
                for t in batch
            ]
            responses = model.generate(requests, params)
            store.add_generations(
                [
                    GenerationRow(
                        t.key,
                        t.variant,
                        model.name,
                        model.fingerprint(),
                        model.adapter_hash(),
                        dataset.sha256,
                        t.item.id,
                        t.split,
                        t.shots,
                        t.sample_index,
                        t.seed,
                        t.image_sha256,
                        t.prompt_text,
                        sampling_json,
                        response,
                    )
                    for t, response in zip(batch, responses, strict=True)
                ]
            )
            bar.update(len(batch))
    return len(todo)


def judge_inputs(tasks: Sequence[Task], responses: dict[str, str]) -> list[JudgeInput]:
    return [
        JudgeInput(
            id=t.item.id,
            question=t.item.question,
            response=responses[t.key],
            aligned_stance=t.item.aligned_stance,
            prompt=build_prompt(t.item, t.shots).qa_text(),
            image=t.item.image,
        )
        for t in tasks
    ]


def judge_missing(
    store: RunStore,
    judge: Judge,
    tasks: Sequence[Task],
    batch_size: int = 64,
    progress: bool = True,
) -> int:
    config_hash = judge_config_hash(judge)
    unique = list(dict((t.key, t) for t in tasks).values())
    done = store.judged_keys(judge.name, config_hash, [t.key for t in unique])
    todo = [t for t in unique if t.key not in done]
    responses = {g.key: g.response for g in store.generations([t.key for t in todo])}
    with tqdm(
        total=len(todo), desc=f"judge {judge.name}", unit="resp", disable=not progress
    ) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            verdicts = judge.judge(judge_inputs(batch, responses))
            store.add_judgments(
                [
                    JudgmentRow(t.key, judge.name, config_hash, v.aligned, v.score, v.detail)
                    for t, v in zip(batch, verdicts, strict=True)
                ]
            )
            bar.update(len(batch))
    return len(todo)


def run_study(config: StudyConfig, progress: bool = True) -> StudyResult:
    """Run (or resume) a whole study and write report.md and results.json into config.out."""
    dataset = validate_for_study(config)
    judges = [build_judge(name) for name in config.judges]
    log.info("preparing model %s", config.model)
    model = load_model(config.model, config.device, progress)
    prompt_format = config.prompt_format or model.default_prompt_format
    tasks = plan_tasks(dataset, model, config, prompt_format)
    provenance = {
        **environment(),
        "model": model.name,
        "model_fingerprint": model.fingerprint(),
        "adapter_hash": model.adapter_hash(),
        "dataset": dataset.source,
        "dataset_sha256": dataset.sha256,
        "prompt_format": prompt_format,
        "sampling": config.sampling.model_dump(),
        "samples_per_prompt": config.samples,
        "seed": config.seed,
        "judges": {j.name: j.config() for j in judges},
    }
    with RunStore(config.out) as store:
        run_id = store.start_run(provenance)
        store.snapshot_dataset(dataset)
        generated = generate_missing(
            store, model, dataset, tasks, config.sampling, config.batch_size, progress
        )
        judged = {j.name: judge_missing(store, j, tasks, progress=progress) for j in judges}
        cells = summarize(store, tasks, judges)
        store.finish_run(run_id)
    result = StudyResult(config, cells, provenance, generated, len(tasks) - generated, judged)
    write_report(config.out, cells, provenance, [j.name for j in judges])
    return result
