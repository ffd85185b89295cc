"""Study orchestration: prepare -> generate what is missing -> judge what is missing -> finetune
-> summarise.

A run is a sequence of stages over one `StudyContext` (what `prepare` builds: config, dataset,
processes, judges, model, prompt format). Each stage takes typed inputs and returns a typed,
frozen result: `judge_references` -> `ReferenceResult`, `evaluate` -> `Evaluated`,
`finetune_stage` -> `FinetunedAdapter`, `finish` -> `Recorded`, `result` -> `StudyResult`. The
run's provenance is built, not changed: `finish` makes the final one from the started one and
the pieces the stages returned, and the store's `finish_run` records it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vlmalign.config import Condition, StudyConfig
from vlmalign.data.dataset import Dataset
from vlmalign.distributed import Processes, join
from vlmalign.generation import Task, generate_split, plan_tasks
from vlmalign.judges.base import Judge, JudgeInput, refusal_verdict
from vlmalign.judges.registry import build_judge, judge_config_hash
from vlmalign.judges.validity import ValidityEntry, heldout_entry
from vlmalign.models.base import Generator, Trainable
from vlmalign.models.registry import load_model
from vlmalign.models.spec import check_role
from vlmalign.prompts import PromptFormat
from vlmalign.provenance import study_provenance
from vlmalign.report.analysis import Cell
from vlmalign.report.build import build_report
from vlmalign.report.usage import ConditionUsage
from vlmalign.schemas.adapter_card import AdapterCard
from vlmalign.schemas.provenance import AdapterSummary, Provenance
from vlmalign.store import JudgmentRow, RunStore
from vlmalign.study_checks import used_roles, validate_for_study
from vlmalign.validation import judge_references as judge_reference_answers

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    """What a study run gave. Under `accelerate launch` only the main process has the cells,
    verdict counts and validity; the others return `main_process=False` and nothing to report."""

    config: StudyConfig
    cells: list[Cell]
    provenance: Provenance
    generated: int = 0
    reused: int = 0
    judged: dict[str, int] = field(default_factory=dict)
    validity: list[ValidityEntry] = field(default_factory=list)
    main_process: bool = True
    usage: list[ConditionUsage] = field(default_factory=list)  # responses, tokens, refusals

    def to_pandas(self) -> Any:
        """The cells as a pandas DataFrame, one row per judge and condition, with the columns
        of `results.csv` (`model` the model's name, `variant` base/finetuned)."""
        import pandas as pd

        from vlmalign.report.build import cell_row

        names = {self.config.out.name: self.provenance.model or ""}
        rows = [cell_row(c.model_dump(mode="json"), names) for c in self.cells]
        return pd.DataFrame(rows)

    def responses(self) -> list[dict[str, Any]]:
        """Every response of the run with each judge's verdict and the human labels, as
        `vlmalign responses export` writes them to JSONL."""
        from vlmalign.report.responses import json_object, response_records
        from vlmalign.report.run_data import load_run

        return [json_object(record) for record in response_records(load_run(self.config.out))]


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
    rows = store.generations([t.key for t in todo])
    responses = {g.key: g.response for g in rows}
    # A refusal by the endpoint's content filter has no answer to judge: every judge says so.
    refused = {g.key for g in rows if g.refused}
    if refused:
        store.add_judgments(
            [
                JudgmentRow.of(t.key, judge.name, config_hash, refusal_verdict())
                for t in todo
                if t.key in refused
            ]
        )
        todo = [t for t in todo if t.key not in refused]
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
    return len(todo) + len(refused)


# --- the stages' inputs and outputs -----------------------------------------------------------


@dataclass(frozen=True)
class StudyContext:
    """What every stage of one run works with, built once by `prepare`."""

    config: StudyConfig
    dataset: Dataset
    processes: Processes  # this process's place (one, or one of several under a launcher)
    judges: tuple[Judge, ...]  # built on the main process only: the only one that judges
    model: Generator
    prompt_format: PromptFormat
    progress: bool  # progress bars and counts: on the main process only


@dataclass(frozen=True)
class ReferenceResult:
    """What judging the dataset's reference answers gave beyond the stored verdicts: each
    judge's validity on its own held-out data, and every judge's config as it judges now (a
    `threshold: auto` judge's with the cuts just fit on the references)."""

    heldout: Mapping[str, ValidityEntry]
    judge_configs: Mapping[str, dict[str, Any]]


@dataclass(frozen=True)
class Evaluated:
    """Responses a run covers, how many were generated anew, and verdicts added per judge."""

    tasks: tuple[Task, ...] = ()
    generated: int = 0
    judged: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: Evaluated) -> Evaluated:
        judged = dict(self.judged)
        for name, count in other.judged.items():
            judged[name] = judged.get(name, 0) + count
        return Evaluated(self.tasks + other.tasks, self.generated + other.generated, judged)


@dataclass(frozen=True)
class FinetunedAdapter:
    """The adapter the finetuned model runs with: its card and its folder."""

    card: AdapterCard
    folder: Path

    @property
    def summary(self) -> AdapterSummary:
        return AdapterSummary.of(self.card, self.folder)


@dataclass(frozen=True)
class Run:
    """A study run in the store as this process sees it. The main process writes (`run_id`);
    under `accelerate launch` the others read the store (`run_id` None) to learn what is done."""

    store: RunStore
    started: Provenance  # as recorded when the run started
    run_id: int | None  # None: a process that only reads
    deferred: bool  # several processes: judging waits until all have generated
    references: ReferenceResult | None = None  # None until judged (deferred, or not main)

    @property
    def writes(self) -> bool:
        return self.run_id is not None


@dataclass(frozen=True)
class Recorded:
    """A finished run: what it covered and its final provenance."""

    evaluated: Evaluated
    provenance: Provenance


# --- the stages -------------------------------------------------------------------------------


def prepare(
    config: StudyConfig, checked: StudyConfig, progress: bool = True, adapter: Path | None = None
) -> StudyContext:
    """Refuse what the model cannot do and validate the data for `checked`'s conditions (before
    anything is loaded or written), join the run's processes, build the judges (on the main
    process), then the model (the slow part, last), checked to fill the roles it is used in."""
    dataset = validate_for_study(checked, adapter)
    processes = join(config.device)
    main = processes.is_main
    options = config.options_by_judge()  # by identity: `vlm:mini`, or a label like `small`
    judging = zip(config.judges, config.judge_names(), strict=True) if main else ()
    judges = tuple(
        build_judge(
            name,
            options.get(identity),
            device=config.device,
            image_base_dir=dataset.base_dir,  # items' image references are relative to it
            api=config.api,  # a `vlm:openai:` judge's endpoint, unless its options name one
        )
        for name, identity in judging
    )
    parallel = None
    if config.engine == "vllm":
        from vlmalign.models.vllm_engine import parallel_settings

        tensor, data = config.tensor_parallel_size, config.data_parallel_size
        parallel = parallel_settings(tensor, data, processes.count)
        if processes.distributed:  # one vLLM rank per process, `tensor` of them to a copy
            processes = processes.grouped(tensor)
    if main:
        log.info("preparing model %s", config.model)
    device = processes.device or config.device  # under a launcher: this process's own GPU
    model = load_model(config.model, device, progress and main, config.engine, parallel, config.api)
    for capability in used_roles(checked, adapter):
        check_role(model, config.model, capability)
    return StudyContext(
        config=config,
        dataset=dataset,
        processes=processes,
        judges=judges,
        model=model,
        prompt_format=config.prompt_format or model.default_prompt_format,
        progress=progress and main,
    )


def judge_references(context: StudyContext, store: RunStore) -> ReferenceResult:
    """Every judge's verdicts on the dataset's reference answers (judge validity), stored."""
    heldout: dict[str, ValidityEntry] = {}
    for judge in context.judges:
        judge_reference_answers(store, judge, context.dataset, context.progress)
        entry = heldout_entry(judge)
        if entry is not None:
            heldout[judge.name] = entry
    # A `threshold: auto` judge was fit on the references just now: its config has its cuts (the
    # one fit on every reference and one per fold; a response is judged with its fold's cut).
    return ReferenceResult(heldout, {judge.name: judge.config() for judge in context.judges})


@contextmanager
def open_run(context: StudyContext, started: Provenance) -> Iterator[Run]:
    """A study run in the store: started with its dataset snapshot and, unless judging is
    deferred, every judge's verdicts on the reference answers. The block ends with `finish`; a
    block that fails leaves the run unfinished (never reported).

    Only the main process writes. Under `accelerate launch` the others open the store read-only
    once the run is started, to learn what is done; the main process judges (references, then
    responses) when every process has generated, so no process waits on a judge.
    """
    processes = context.processes
    if not processes.is_main:
        processes.wait()  # the main process has started the run
        with RunStore(context.config.out, read_only=True) as view:
            yield Run(view, started, run_id=None, deferred=True)
        return
    with RunStore(context.config.out) as store:
        run_id = store.start_run(started.as_json())
        store.snapshot_dataset(context.dataset)
        deferred = processes.distributed
        references = None if deferred else judge_references(context, store)
        processes.wait()  # the others may open the store now
        yield Run(store, started, run_id, deferred, references)


def judges_now(context: StudyContext, run: Run) -> tuple[Judge, ...]:
    """The judges that judge responses as they come (none while judging is deferred)."""
    return () if run.deferred else context.judges


def evaluate(
    context: StudyContext,
    store: RunStore,
    conditions: Sequence[Condition],
    variant: str,
    judges: Sequence[Judge],
) -> Evaluated:
    """Generate and judge one model variant on some conditions. With several processes, each
    generates its share (generate_split)."""
    config = context.config
    tasks = plan_tasks(
        context.dataset, context.model, config, context.prompt_format, variant, conditions
    )
    if context.progress:
        log.info("%s model: %d responses to obtain", variant, len(tasks))
    generated = generate_split(
        context.processes,
        store,
        context.model,
        context.dataset,
        tasks,
        config.sampling,
        config.batch_size,
        context.progress,
    )
    judged = {j.name: judge_missing(store, j, tasks, progress=context.progress) for j in judges}
    return Evaluated(tuple(tasks), generated, judged)


def load_adapter_stage(context: StudyContext, folder: Path) -> FinetunedAdapter:
    """The adapter in `folder`, checked against the model and loaded (on every process)."""
    from vlmalign.models.adapters import load_adapter  # a study without adapters loads none

    return FinetunedAdapter(load_adapter(context.model, folder), folder)


def record_adapter(run: Run, adapter: FinetunedAdapter) -> None:
    """The adapter's per-epoch losses, for the report (by the process that writes)."""
    if run.writes:
        run.store.record_finetune(adapter.card.model_dump(mode="json"))


def finetune_stage(context: StudyContext, run: Run) -> FinetunedAdapter:
    """The finetuned model: trained into `out/adapter/` (every process takes part, accelerate;
    the main one saves), or the config's `adapter`; loaded on every process and recorded."""
    config = context.config
    folder = config.adapter
    if folder is None:
        # Imported here: a study without this stage (a scripted model's) needs no torch.
        from vlmalign.finetune import ADAPTER_DIR, finetune

        model = context.model
        assert config.finetune is not None
        assert isinstance(model, Trainable)  # `prepare` checked the role ('train' required)
        finetune(
            model,
            context.dataset,
            config.out,
            config.finetune,
            prompt_format=context.prompt_format,
            shots_as=config.shots_as,
            progress=context.progress,
        )
        folder = config.out / ADAPTER_DIR
    adapter = load_adapter_stage(context, folder)
    record_adapter(run, adapter)
    return adapter


def final_provenance(
    started: Provenance, references: ReferenceResult | None, adapter: FinetunedAdapter | None
) -> Provenance:
    """The run's provenance as it finished: the started one with held-out validity, the judge
    configs as they judged (fitted cuts) and the finetuned adapter, where known."""
    update: dict[str, Any] = {}
    if references is not None:
        update["judge_heldout_validity"] = {
            **started.judge_heldout_validity,
            **references.heldout,
        }
        update["judges"] = dict(references.judge_configs)
    if adapter is not None:
        update["finetuned_adapter"] = adapter.summary
    return started.model_copy(update=update)


def finish(
    context: StudyContext, run: Run, evaluated: Evaluated, adapter: FinetunedAdapter | None
) -> Recorded:
    """The end of a run's block: every process lets go of the process group; the main process
    judges what was deferred, records the responses the run covers and finishes the run with
    its final provenance."""
    context.processes.leave()  # every collective is behind: judging needs none
    if not run.writes:
        return Recorded(evaluated, final_provenance(run.started, None, adapter))
    store, judges = run.store, context.judges
    covered = Evaluated(judged={judge.name: 0 for judge in judges}) + evaluated
    references = run.references
    if references is None:  # deferred: every process has generated
        references = judge_references(context, store)
        deferred = {
            j.name: judge_missing(store, j, covered.tasks, progress=context.progress)
            for j in judges
        }
        covered += Evaluated(judged=deferred)
    provenance = final_provenance(run.started, references, adapter)
    assert run.run_id is not None
    store.add_run_generations(run.run_id, [t.key for t in covered.tasks])
    store.finish_run(run.run_id, provenance.as_json())
    return Recorded(covered, provenance)


def result(context: StudyContext, recorded: Recorded) -> StudyResult:
    """The run's report (written by the main process) and what it gave."""
    config, evaluated = context.config, recorded.evaluated
    reused = len(evaluated.tasks) - evaluated.generated
    if not context.processes.is_main:
        return StudyResult(
            config, [], recorded.provenance, evaluated.generated, reused, main_process=False
        )
    analysis = build_report([config.out], config.out)[0]
    return StudyResult(
        config,
        analysis.cells,
        recorded.provenance,
        evaluated.generated,
        reused,
        dict(evaluated.judged),
        analysis.validity,
        usage=analysis.usage,
    )


# --- the runs ---------------------------------------------------------------------------------


def run_study(config: StudyConfig, progress: bool = True) -> StudyResult:
    """Run (or resume) the paper's study and write report.md and results.json into config.out.

    Base model on `conditions`; then, unless finetuning is off and no adapter is given, the
    finetuned model (trained here, or loaded from `adapter`) on `finetuned_conditions`. A model
    that cannot be finetuned (or take the adapter) is refused before anything is written. Under
    `accelerate launch` the processes split the generation (and train together); the main
    process judges, records and reports (docs/scaling.md).
    """
    context = prepare(config, config, progress)
    started = study_provenance(
        context.model, context.dataset, config, context.prompt_format, context.judges
    )
    with open_run(context, started) as run:
        judges = judges_now(context, run)
        evaluated = evaluate(context, run.store, config.conditions, "base", judges)
        adapter = None
        if config.adapter is not None or config.finetune is not None:
            adapter = finetune_stage(context, run)
            conditions = config.finetuned_conditions
            evaluated += evaluate(context, run.store, conditions, "finetuned", judges)
        recorded = finish(context, run, evaluated, adapter)
    return result(context, recorded)


def run_eval(
    config: StudyConfig, adapter: Path | None = None, progress: bool = True
) -> StudyResult:
    """Generate and judge one model (base, or with `adapter`) on `config.conditions`; under
    `accelerate launch` as run_study does."""
    one_model = config.model_copy(update={"finetune": None, "adapter": None})
    context = prepare(config, one_model, progress, adapter)
    loaded = None if adapter is None else load_adapter_stage(context, adapter)
    started = study_provenance(
        context.model, context.dataset, config, context.prompt_format, context.judges
    )
    if loaded is not None:
        started = started.model_copy(update={"finetuned_adapter": loaded.summary})
    variant = "base" if loaded is None else "finetuned"
    with open_run(context, started) as run:
        if loaded is not None:
            record_adapter(run, loaded)
        evaluated = evaluate(
            context, run.store, config.conditions, variant, judges_now(context, run)
        )
        recorded = finish(context, run, evaluated, loaded)
    return result(context, recorded)
