"""Study orchestration: plan -> generate what is missing -> judge what is missing -> summarise."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vlmalign.config import Condition, StudyConfig
from vlmalign.data.dataset import Dataset, check_shots, load_dataset
from vlmalign.data.images import load_image
from vlmalign.data.schema import Item
from vlmalign.errors import ConfigError
from vlmalign.judges.base import Judge, JudgeInput
from vlmalign.judges.registry import build_judge, judge_config_hash
from vlmalign.judges.validity import ValidityEntry, heldout_entry
from vlmalign.models.base import GenerationRequest, Generator, Trainable
from vlmalign.models.registry import load_model
from vlmalign.prompts import PromptFormat, build_prompt, condition_name
from vlmalign.provenance import study_provenance
from vlmalign.report.analysis import Cell
from vlmalign.report.build import build_report
from vlmalign.sampling import SamplingParams, derive_seed
from vlmalign.schemas.provenance import AdapterSummary, Provenance
from vlmalign.store import GenerationRow, JudgmentRow, RunStore, generation_key
from vlmalign.validation import judge_references

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
    provenance: Provenance
    generated: int = 0
    reused: int = 0
    judged: dict[str, int] = field(default_factory=dict)
    validity: list[ValidityEntry] = field(default_factory=list)


def validate_for_study(config: StudyConfig) -> Dataset:
    """Load the dataset and check every condition can be asked (before anything is written)."""
    if config.engine == "vllm" and config.finetune is not None and config.adapter is None:
        raise ConfigError(
            "--engine vllm only generates: pass --no-finetune, or finetune first "
            "(`vlmalign finetune`, engine hf) and pass --adapter RUN_DIR/adapter"
        )
    dataset = load_dataset(config.dataset)
    conditions = list(config.conditions)
    if config.finetune is not None or config.adapter is not None:
        conditions += config.finetuned_conditions
    for condition in conditions:
        check_shots(dataset, condition.shots, condition.split)
    return dataset


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
                    )
                )
    return tasks


def generate_missing(
    store: RunStore,
    model: Generator,
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
                    load_image(t.item.image, dataset.base_dir).image,
                    t.prompt_text,
                    t.seed,
                    item=t.item,  # scripted models answer by item
                    shots=t.shots,
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
    return [JudgeInput.for_item(t.item, t.shots, responses[t.key]) for t in tasks]


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
                    JudgmentRow.of(t.key, judge.name, config_hash, v)
                    for t, v in zip(batch, verdicts, strict=True)
                ]
            )
            bar.update(len(batch))
    return len(todo)


def evaluate(
    store: RunStore,
    model: Generator,
    dataset: Dataset,
    config: StudyConfig,
    conditions: Sequence[Condition],
    variant: str,
    judges: Sequence[Judge],
    prompt_format: PromptFormat,
    progress: bool,
) -> tuple[list[Task], int, dict[str, int]]:
    """Generate and judge one model variant on some conditions; returns its tasks and counts."""
    tasks = plan_tasks(dataset, model, config, prompt_format, variant, conditions)
    if progress:
        log.info("%s model: %d responses to obtain", variant, len(tasks))
    generated = generate_missing(
        store, model, dataset, tasks, config.sampling, config.batch_size, progress
    )
    judged = {j.name: judge_missing(store, j, tasks, progress=progress) for j in judges}
    return tasks, generated, judged


def _prepare(
    config: StudyConfig, checked: StudyConfig, progress: bool
) -> tuple[Dataset, list[Judge], Any]:
    """Validate the data for `checked`'s conditions (before anything is written), build the
    judges, then the model (the slow part, last)."""
    dataset = validate_for_study(checked)
    options = config.options_by_judge()  # by identity: `vlm:mini`, or a label like `small`
    judges = [
        build_judge(
            name,
            options.get(identity),
            device=config.device,
            image_base_dir=dataset.base_dir,  # items' image references are relative to it
        )
        for name, identity in zip(config.judges, config.judge_names(), strict=True)
    ]
    log.info("preparing model %s", config.model)
    return dataset, judges, load_model(config.model, config.device, progress, config.engine)


@contextmanager
def _recorded_run(
    out: Path,
    dataset: Dataset,
    provenance: Provenance,
    judges: Sequence[Judge],
    progress: bool,
) -> Iterator[tuple[RunStore, list[Task]]]:
    """A study run in the store: started with its dataset snapshot and every judge's verdicts on
    the dataset's reference answers (judge validity); when the block succeeds, the tasks it
    appended and its final provenance are recorded and the run is finished."""
    with RunStore(out) as store:
        run_id = store.start_run(provenance.as_json())
        store.snapshot_dataset(dataset)
        for judge in judges:
            judge_references(store, judge, dataset, progress)
            heldout = heldout_entry(judge)
            if heldout is not None:
                provenance.judge_heldout_validity[judge.name] = heldout
        # A `threshold: auto` judge was fit on the references just now: record its cut.
        provenance.judges = {judge.name: judge.config() for judge in judges}
        tasks: list[Task] = []
        yield store, tasks
        store.add_run_generations(run_id, [t.key for t in tasks])
        store.finish_run(run_id, provenance.as_json())


def run_study(config: StudyConfig, progress: bool = True) -> StudyResult:
    """Run (or resume) the paper's study and write report.md and results.json into config.out.

    Base model on `conditions`; then, unless finetuning is off and no adapter is given, the
    finetuned model (trained here, or loaded from `adapter`) on `finetuned_conditions`.
    """
    dataset, judges, model = _prepare(config, config, progress)
    if config.finetune is not None and config.adapter is None and not isinstance(model, Trainable):
        log.warning(
            "%s is a scripted model and does not train: finetuning skipped; --no-finetune runs "
            "the study without that stage",
            config.model,
        )
        config = config.model_copy(update={"finetune": None})
    prompt_format = config.prompt_format or model.default_prompt_format
    provenance = study_provenance(model, dataset, config, prompt_format, judges)
    with _recorded_run(config.out, dataset, provenance, judges, progress) as (store, tasks):
        base, generated, judged = evaluate(
            store,
            model,
            dataset,
            config,
            config.conditions,
            "base",
            judges,
            prompt_format,
            progress,
        )
        tasks += base
        if config.adapter is not None or config.finetune is not None:
            # Imported here: a study without this stage (a scripted model's) needs no torch.
            from vlmalign.finetune import ADAPTER_DIR, finetune
            from vlmalign.models.adapters import load_adapter

            if config.adapter is not None:
                adapter_dir = config.adapter
            else:
                assert config.finetune is not None and isinstance(model, Trainable)
                finetune(
                    model,
                    dataset,
                    config.out,
                    config.finetune,
                    prompt_format=prompt_format,
                    shots_as=config.shots_as,
                    progress=progress,
                )
                adapter_dir = config.out / ADAPTER_DIR
            adapter_card = load_adapter(model, adapter_dir)
            store.record_finetune(adapter_card.model_dump(mode="json"))
            more, more_generated, more_judged = evaluate(
                store,
                model,
                dataset,
                config,
                config.finetuned_conditions,
                "finetuned",
                judges,
                prompt_format,
                progress,
            )
            tasks += more
            generated += more_generated
            judged = {k: judged[k] + more_judged[k] for k in judged}
            provenance.finetuned_adapter = AdapterSummary.of(adapter_card, adapter_dir)
    analysis = build_report([config.out], config.out)[0]
    reused = len(tasks) - generated
    return StudyResult(
        config, analysis.cells, provenance, generated, reused, judged, analysis.validity
    )


def run_eval(
    config: StudyConfig, adapter: Path | None = None, progress: bool = True
) -> StudyResult:
    """Generate and judge one model (base, or with `adapter`) on `config.conditions`."""
    from vlmalign.models.adapters import load_adapter

    one_model = config.model_copy(update={"finetune": None, "adapter": None})
    dataset, judges, model = _prepare(config, one_model, progress)
    variant = "base"
    if adapter is not None:
        card = load_adapter(model, adapter)
        variant = "finetuned"
    prompt_format = config.prompt_format or model.default_prompt_format
    provenance = study_provenance(model, dataset, config, prompt_format, judges)
    if adapter is not None:
        provenance.finetuned_adapter = AdapterSummary.of(card, adapter)
    with _recorded_run(config.out, dataset, provenance, judges, progress) as (store, tasks):
        if adapter is not None:
            store.record_finetune(card.model_dump(mode="json"))
        evaluated, generated, judged = evaluate(
            store,
            model,
            dataset,
            config,
            config.conditions,
            variant,
            judges,
            prompt_format,
            progress,
        )
        tasks += evaluated
    analysis = build_report([config.out], config.out)[0]
    reused = len(tasks) - generated
    return StudyResult(
        config, analysis.cells, provenance, generated, reused, judged, analysis.validity
    )
