"""Study orchestration: plan -> generate what is missing -> judge what is missing -> summarise."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vlmalign.config import Condition, StudyConfig
from vlmalign.data.dataset import Dataset, check_shots, load_dataset
from vlmalign.distributed import Processes, join
from vlmalign.errors import ConfigError
from vlmalign.generation import Task, generate_split, plan_tasks
from vlmalign.judges.base import Judge, JudgeInput, refusal_verdict
from vlmalign.judges.registry import build_judge, judge_config_hash
from vlmalign.judges.validity import ValidityEntry, heldout_entry
from vlmalign.models.base import (
    Generator,
    Trainable,
)
from vlmalign.models.registry import load_model
from vlmalign.prompts import PromptFormat
from vlmalign.provenance import study_provenance
from vlmalign.report.analysis import Cell
from vlmalign.report.build import build_report
from vlmalign.report.usage import ConditionUsage
from vlmalign.schemas.provenance import AdapterSummary, Provenance
from vlmalign.store import JudgmentRow, RunStore
from vlmalign.validation import judge_references

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
        from vlmalign.schemas.results import CellRecord

        names = {self.config.out.name: self.provenance.model or ""}
        rows = [
            cell_row(CellRecord.model_validate(asdict(c)).model_dump(mode="json"), names)
            for c in self.cells
        ]
        return pd.DataFrame(rows)

    def responses(self) -> list[dict[str, Any]]:
        """Every response of the run with each judge's verdict and the human labels, as
        `vlmalign responses export` writes them to JSONL."""
        from vlmalign.report.responses import json_object, response_records
        from vlmalign.report.run_data import load_run

        return [json_object(record) for record in response_records(load_run(self.config.out))]


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
    processes: Processes | None = None,
) -> tuple[list[Task], int, dict[str, int]]:
    """Generate and judge one model variant on some conditions; returns its tasks and counts.
    With several `processes`, each generates its share (generate_split)."""
    tasks = plan_tasks(dataset, model, config, prompt_format, variant, conditions)
    if progress:
        log.info("%s model: %d responses to obtain", variant, len(tasks))
    generated = generate_split(
        processes or Processes(),
        store,
        model,
        dataset,
        tasks,
        config.sampling,
        config.batch_size,
        progress,
    )
    judged = {j.name: judge_missing(store, j, tasks, progress=progress) for j in judges}
    return tasks, generated, judged


def _prepare(
    config: StudyConfig, checked: StudyConfig, progress: bool
) -> tuple[Processes, Dataset, list[Judge], Any]:
    """Validate the data for `checked`'s conditions (before anything is written), join the
    run's processes, build the judges (on the main process: the only one that judges), then
    the model (the slow part, last)."""
    dataset = validate_for_study(checked)
    processes = join(config.device)
    options = config.options_by_judge()  # by identity: `vlm:mini`, or a label like `small`
    judging = zip(config.judges, config.judge_names(), strict=True) if processes.is_main else ()
    judges = [
        build_judge(
            name,
            options.get(identity),
            device=config.device,
            image_base_dir=dataset.base_dir,  # items' image references are relative to it
            api=config.api,  # a `vlm:openai:` judge's endpoint, unless its options name one
        )
        for name, identity in judging
    ]
    parallel = None
    if config.engine == "vllm":
        from vlmalign.models.vllm_engine import parallel_settings

        tensor, data = config.tensor_parallel_size, config.data_parallel_size
        parallel = parallel_settings(tensor, data, processes.count)
        if processes.distributed:  # one vLLM rank per process, `tensor` of them to a copy
            processes = processes.grouped(tensor)
    if processes.is_main:
        log.info("preparing model %s", config.model)
    device = processes.device or config.device  # under a launcher: this process's own GPU
    model = load_model(
        config.model, device, progress and processes.is_main, config.engine, parallel, config.api
    )
    return processes, dataset, judges, model


@dataclass
class _Recording:
    """A study run as this process records it: the tasks it covers and the counts so far."""

    store: RunStore
    judges: Sequence[Judge]  # empty on processes other than the main one
    deferred: bool  # several processes: judging waits until all have generated
    tasks: list[Task] = field(default_factory=list)
    generated: int = 0
    judged: dict[str, int] = field(default_factory=dict)

    @property
    def judges_now(self) -> Sequence[Judge]:
        """The judges that judge responses as they come (none while judging is deferred)."""
        return () if self.deferred else self.judges

    def add(self, tasks: Sequence[Task], generated: int, judged: dict[str, int]) -> None:
        self.tasks += tasks
        self.generated += generated
        for name, count in judged.items():
            self.judged[name] = self.judged.get(name, 0) + count


def _judge_references(
    store: RunStore,
    dataset: Dataset,
    provenance: Provenance,
    judges: Sequence[Judge],
    progress: bool,
) -> None:
    """Every judge's verdicts on the dataset's reference answers (judge validity)."""
    for judge in judges:
        judge_references(store, judge, dataset, progress)
        heldout = heldout_entry(judge)
        if heldout is not None:
            provenance.judge_heldout_validity[judge.name] = heldout
    # A `threshold: auto` judge was fit on the references just now: record its cuts (the one fit
    # on every reference and one per fold; a response is judged with its item's fold's cut).
    provenance.judges = {judge.name: judge.config() for judge in judges}


@contextmanager
def _recorded_run(
    out: Path,
    dataset: Dataset,
    provenance: Provenance,
    judges: Sequence[Judge],
    processes: Processes,
    progress: bool,
) -> Iterator[_Recording]:
    """A study run in the store: started with its dataset snapshot and every judge's verdicts on
    the dataset's reference answers (judge validity); when the block succeeds, the tasks it
    recorded and its final provenance are written and the run is finished.

    Only the main process writes. Under `accelerate launch` the others open the store read-only
    once the run is started, to learn what is done; the main process judges (references, then
    responses) when every process has generated, so no process waits on a judge.
    """
    if not processes.is_main:
        processes.wait()  # the main process has started the run
        with RunStore(out, read_only=True) as view:
            yield _Recording(view, judges=(), deferred=True)
        processes.leave()  # its last collective is behind it
        return
    with RunStore(out) as store:
        run_id = store.start_run(provenance.as_json())
        store.snapshot_dataset(dataset)
        recording = _Recording(store, judges, deferred=processes.distributed)
        recording.judged = {judge.name: 0 for judge in judges}
        if not recording.deferred:
            _judge_references(store, dataset, provenance, judges, progress)
        processes.wait()  # the others may open the store now
        yield recording
        processes.leave()  # every collective is behind: judging needs none
        if recording.deferred:
            _judge_references(store, dataset, provenance, judges, progress)
            recording.add(
                [],
                0,
                {
                    j.name: judge_missing(store, j, recording.tasks, progress=progress)
                    for j in judges
                },
            )
        store.add_run_generations(run_id, [t.key for t in recording.tasks])
        store.finish_run(run_id, provenance.as_json())


def _result(
    config: StudyConfig, processes: Processes, provenance: Provenance, recording: _Recording
) -> StudyResult:
    """The run's report (written by the main process) and what it gave."""
    reused = len(recording.tasks) - recording.generated
    if not processes.is_main:
        return StudyResult(config, [], provenance, recording.generated, reused, main_process=False)
    analysis = build_report([config.out], config.out)[0]
    return StudyResult(
        config,
        analysis.cells,
        provenance,
        recording.generated,
        reused,
        recording.judged,
        analysis.validity,
        usage=analysis.usage,
    )


def run_study(config: StudyConfig, progress: bool = True) -> StudyResult:
    """Run (or resume) the paper's study and write report.md and results.json into config.out.

    Base model on `conditions`; then, unless finetuning is off and no adapter is given, the
    finetuned model (trained here, or loaded from `adapter`) on `finetuned_conditions`. Under
    `accelerate launch` the processes split the generation (and train together); the main
    process judges, records and reports (docs/scaling.md).
    """
    processes, dataset, judges, model = _prepare(config, config, progress)
    progress = progress and processes.is_main  # progress bars on the main process only
    if config.finetune is not None and config.adapter is None and not isinstance(model, Trainable):
        if processes.is_main:
            log.warning(
                "%s is not trained here (a scripted or remote model): finetuning skipped; "
                "--no-finetune runs the study without that stage",
                config.model,
            )
        config = config.model_copy(update={"finetune": None})
    prompt_format = config.prompt_format or model.default_prompt_format
    provenance = study_provenance(model, dataset, config, prompt_format, judges)
    with _recorded_run(config.out, dataset, provenance, judges, processes, progress) as run:
        run.add(
            *evaluate(
                run.store,
                model,
                dataset,
                config,
                config.conditions,
                "base",
                run.judges_now,
                prompt_format,
                progress,
                processes,
            )
        )
        if config.adapter is not None or config.finetune is not None:
            # Imported here: a study without this stage (a scripted model's) needs no torch.
            from vlmalign.finetune import ADAPTER_DIR, finetune
            from vlmalign.models.adapters import load_adapter

            if config.adapter is not None:
                adapter_dir = config.adapter
            else:
                assert config.finetune is not None and isinstance(model, Trainable)
                finetune(  # every process takes part (accelerate), the main one saves
                    model,
                    dataset,
                    config.out,
                    config.finetune,
                    prompt_format=prompt_format,
                    shots_as=config.shots_as,
                    progress=progress,
                )
                adapter_dir = config.out / ADAPTER_DIR
            adapter_card = load_adapter(model, adapter_dir)  # on every process
            if processes.is_main:
                run.store.record_finetune(adapter_card.model_dump(mode="json"))
            run.add(
                *evaluate(
                    run.store,
                    model,
                    dataset,
                    config,
                    config.finetuned_conditions,
                    "finetuned",
                    run.judges_now,
                    prompt_format,
                    progress,
                    processes,
                )
            )
            provenance.finetuned_adapter = AdapterSummary.of(adapter_card, adapter_dir)
    return _result(config, processes, provenance, run)


def run_eval(
    config: StudyConfig, adapter: Path | None = None, progress: bool = True
) -> StudyResult:
    """Generate and judge one model (base, or with `adapter`) on `config.conditions`; under
    `accelerate launch` as run_study does."""
    from vlmalign.models.adapters import load_adapter

    one_model = config.model_copy(update={"finetune": None, "adapter": None})
    processes, dataset, judges, model = _prepare(config, one_model, progress)
    progress = progress and processes.is_main  # progress bars on the main process only
    variant = "base"
    if adapter is not None:
        card = load_adapter(model, adapter)
        variant = "finetuned"
    prompt_format = config.prompt_format or model.default_prompt_format
    provenance = study_provenance(model, dataset, config, prompt_format, judges)
    if adapter is not None:
        provenance.finetuned_adapter = AdapterSummary.of(card, adapter)
    with _recorded_run(config.out, dataset, provenance, judges, processes, progress) as run:
        if adapter is not None and processes.is_main:
            run.store.record_finetune(card.model_dump(mode="json"))
        run.add(
            *evaluate(
                run.store,
                model,
                dataset,
                config,
                config.conditions,
                variant,
                run.judges_now,
                prompt_format,
                progress,
                processes,
            )
        )
    return _result(config, processes, provenance, run)
