"""Generation as a study runs it: one Task per response to obtain, the ones not yet stored
generated in batches (or, from a model that streams, as they arrive) and written to the store;
under `accelerate launch`, split between the processes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Protocol

from tqdm.auto import tqdm

from vlmalign.config import Condition, StudyConfig
from vlmalign.data.dataset import Dataset
from vlmalign.data.images import load_image
from vlmalign.data.schema import Item
from vlmalign.distributed import Processes, deal, group_in_order
from vlmalign.models.base import Generated, GenerationRequest, Generator, StreamsGenerations
from vlmalign.prompts import Prompt, PromptFormat, ShotsAs, build_prompt, condition_name
from vlmalign.sampling import SamplingParams, derive_seed
from vlmalign.store import GenerationRow, RunStore, generation_key

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
    # The prompt before rendering, for backends that send turns (`openai:`).
    prompt: Prompt | None = None
    prompt_format: PromptFormat | None = None
    shots_as: ShotsAs | None = None


class GenerationStore(Protocol):
    """Where generate_missing learns what is done and puts new rows: the run store, or the rows
    of one process's share, kept to be gathered to the main process."""

    def existing_keys(self, keys: Iterable[str]) -> set[str]: ...

    def add_generations(self, rows: Sequence[GenerationRow]) -> None: ...


def plan_tasks(
    dataset: Dataset,
    model: Generator,
    config: StudyConfig,
    prompt_format: PromptFormat,
    variant: str = "base",
    conditions: Sequence[Condition] | None = None,
) -> list[Task]:
    tasks = []
    sampling = config.sampling.key()
    if config.engine != "hf":  # another engine samples differently: its answers are others
        sampling = {**sampling, "engine": config.engine}
    for condition in config.conditions if conditions is None else conditions:
        label = condition_name(condition.split, condition.shots)
        for item in dataset.split(condition.split):
            prompt = build_prompt(item, condition.shots)
            prompt_text = model.render_prompt(prompt, prompt_format, config.shots_as)
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
                        prompt,
                        prompt_format,
                        config.shots_as,
                    )
                )
    return tasks


def prompt_batches(tasks: Sequence[Task], prompts_per_batch: int) -> list[list[Task]]:
    """Tasks cut into batches of up to `prompts_per_batch` distinct prompts (image + text), each
    with all its samples: a model prefills a prompt once for all of them. Prompts of similar
    length go together (less padding). Results do not depend on batching."""
    ordered = sorted(
        tasks,
        key=lambda t: (len(t.prompt_text), t.prompt_text, t.image_sha256, t.sample_index, t.key),
    )
    prompts = [
        list(group) for _, group in groupby(ordered, key=lambda t: (t.prompt_text, t.image_sha256))
    ]
    return [
        [task for prompt in prompts[start : start + prompts_per_batch] for task in prompt]
        for start in range(0, len(prompts), prompts_per_batch)
    ]


def generation_request(task: Task, dataset: Dataset) -> GenerationRequest:
    loaded = load_image(task.item.image, dataset.base_dir)
    return GenerationRequest(
        loaded.image,
        task.prompt_text,
        task.seed,
        item=task.item,  # scripted models answer by item
        shots=task.shots,
        image_key=task.image_sha256,  # the model may keep the image's encoding
        prompt=task.prompt,  # remote models send turns
        prompt_format=task.prompt_format,
        shots_as=task.shots_as,
        image_file=loaded.data,
    )


def generation_row(
    task: Task, model: Generator, dataset: Dataset, sampling_json: str, answer: Generated
) -> GenerationRow:
    return GenerationRow(
        task.key,
        task.variant,
        model.name,
        model.fingerprint(),
        model.adapter_hash(),
        dataset.sha256,
        task.item.id,
        task.split,
        task.shots,
        task.sample_index,
        task.seed,
        task.image_sha256,
        task.prompt_text,
        sampling_json,
        answer.text,
        answer.finish_reason,
        answer.prompt_tokens,
        answer.completion_tokens,
        answer.served_by,
        answer.system_fingerprint,
        answer.refused,
    )


def generate_missing(
    store: GenerationStore,
    model: Generator,
    dataset: Dataset,
    tasks: Sequence[Task],
    params: SamplingParams,
    batch_size: int,
    progress: bool = True,
) -> int:
    """Generate every task not yet in the store; each batch is committed on its own, and a
    model that streams (an endpoint's) has each response written as it arrives."""
    done = store.existing_keys(t.key for t in tasks)
    todo = [t for t in dict((t.key, t) for t in tasks).values() if t.key not in done]
    sampling_json = params.model_dump_json()
    with tqdm(total=len(todo), desc="generate", unit="resp", disable=not progress) as bar:
        if isinstance(model, StreamsGenerations):
            requests = [generation_request(t, dataset) for t in todo]
            for arrived in model.generate_each(requests, params):
                store.add_generations(
                    [
                        generation_row(todo[index], model, dataset, sampling_json, answer)
                        for index, answer in arrived
                    ]
                )
                bar.update(len(arrived))
            return len(todo)
        for batch in prompt_batches(todo, batch_size):
            responses = model.generate([generation_request(t, dataset) for t in batch], params)
            store.add_generations(
                [
                    generation_row(t, model, dataset, sampling_json, Generated(response))
                    for t, response in zip(batch, responses, strict=True)
                ]
            )
            bar.update(len(batch))
    return len(todo)


# Under `accelerate launch`, each process generates about this many batches between two writes
# of the main process to the store: what a crash can lose, against a gather per round.
ROUND_BATCHES = 4


def share_rounds(
    todo: Sequence[Task], shares: int, prompts_per_share: int
) -> list[list[list[Task]]]:
    """Pending tasks cut into rounds, each round dealt into `shares` lists (one per process).

    The split depends only on the tasks, never on their order: tasks are taken by prompt
    (image + text, shortest first, as batches take them), a prompt's samples stay together (a
    model prefills a prompt once for all of them), and each round deals up to
    `prompts_per_share` prompts to every share in turn.
    """
    ordered = sorted(
        todo,
        key=lambda t: (len(t.prompt_text), t.prompt_text, t.image_sha256, t.sample_index, t.key),
    )
    prompts = group_in_order(ordered, lambda t: (t.image_sha256, t.prompt_text))
    size = shares * prompts_per_share
    return [deal(prompts[start : start + size], shares) for start in range(0, len(prompts), size)]


class _ShareRows:
    """One process's generated rows, kept to be gathered (its share holds pending tasks only)."""

    def __init__(self) -> None:
        self.rows: list[GenerationRow] = []

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        return set()

    def add_generations(self, rows: Sequence[GenerationRow]) -> None:
        self.rows.extend(rows)


def generate_split(
    processes: Processes,
    store: RunStore,
    model: Generator,
    dataset: Dataset,
    tasks: Sequence[Task],
    params: SamplingParams,
    batch_size: int,
    progress: bool = True,
) -> int:
    """generate_missing, with the pending tasks split between the run's processes.

    One process: generate_missing itself. Several: every process reads the same pending list
    from the store (writable on the main process, read-only elsewhere) and, round by round,
    generates its share; the rows are gathered to the main process, which writes them.
    Returns how many tasks were pending (the same on every process).
    """
    if not processes.distributed:
        return generate_missing(store, model, dataset, tasks, params, batch_size, progress)
    processes.wait()  # the main process has written every row gathered before
    done = store.existing_keys(t.key for t in tasks)
    todo = [t for t in dict((t.key, t) for t in tasks).values() if t.key not in done]
    rounds = share_rounds(todo, processes.shares, batch_size * ROUND_BATCHES)
    shown = progress and processes.is_main
    if shown:
        sizes = [sum(len(r[share]) for r in rounds) for share in range(processes.shares)]
        log.info("generation split %d ways: %s responses", len(sizes), sizes)
    with tqdm(total=len(todo), desc="generate", unit="resp", disable=not shown) as bar:
        for shares in rounds:
            mine = _ShareRows()
            share = shares[processes.share_index]
            generate_missing(mine, model, dataset, share, params, batch_size, progress=False)
            # The processes of one vLLM model copy generate the same share: one hands it in.
            rows = processes.gather(mine.rows if processes.hands_in else [])
            if processes.is_main:
                store.add_generations(rows)
            bar.update(sum(len(part) for part in shares))
    return len(todo)
