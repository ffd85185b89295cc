"""The `vlmalign` command: parses arguments, calls the library, prints results."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vlmalign.config import FinetuneConfig, StudyConfig
from vlmalign.errors import VlmalignError, validation_message

if TYPE_CHECKING:
    from vlmalign.schemas.provenance import Provenance

app = typer.Typer(
    help="Measure and improve how well vision-language models answer image-grounded moral "
    "questions the way people would.",
    no_args_is_help=True,
    add_completion=False,
)
dataset_app = typer.Typer(help="Check and inspect datasets.", no_args_is_help=True)
ethics_app = typer.Typer(
    help="The ETHICS classifier behind the `ethics` judge.", no_args_is_help=True
)
labels_app = typer.Typer(help="Export and import human labels.", no_args_is_help=True)
judges_app = typer.Typer(help="List judges, and measure how far each can be trusted.")
app.add_typer(dataset_app, name="dataset")
app.add_typer(labels_app, name="labels")
app.add_typer(ethics_app, name="ethics")
app.add_typer(judges_app, name="judges")
store_app = typer.Typer(help="Check run stores (study.sqlite).", no_args_is_help=True)
app.add_typer(store_app, name="store")


# --- options that set config fields -----------------------------------------------------------
# Such an option defaults to None, meaning "the config's value" (a YAML file's, else the
# default), and its help shows the config's default, read from the config class itself: a
# default is written once, in config.py.


def _shown_default(config: type[BaseModel], field: str) -> str | bool:
    """A config field's default as `[default: (...)]` shows it; False when it is unset (None)."""
    value = config.model_fields[field].get_default(call_default_factory=True)
    if value is None:
        return False
    if isinstance(value, tuple | list):
        return ", ".join(str(part) for part in value)
    return str(value)


def _setting(config: type[BaseModel], field: str, help: str, *names: str) -> Any:
    """An option that sets `field` of `config` (StudyConfig or its FinetuneConfig section)."""
    return typer.Option(*names, help=help, show_default=_shown_default(config, field))


# Parameters named otherwise than the field they set (`out` is this module's console).
FIELD_OF_PARAMETER = {"out_dir": "out", "judge_names": "judges"}


def _given(
    ctx: typer.Context, config: type[BaseModel], besides: Collection[str] = ()
) -> dict[str, Any]:
    """The options of this command that set a field of `config` and were given on the command
    line; `besides` names fields left out (they belong to another section, or mean another
    thing here)."""
    given = {}
    for name, value in ctx.params.items():
        field = FIELD_OF_PARAMETER.get(name, name)
        unset = value is None or (isinstance(value, list | tuple) and not value)  # no --judge
        if field in config.model_fields and field not in besides and not unset:
            given[field] = value
    return given


DatasetOption = Annotated[
    str | None, _setting(StudyConfig, "dataset", "JSONL file, builtin:NAME or hf:SOURCE")
]
ModelOption = Annotated[
    str | None, _setting(StudyConfig, "model", "model preset (see `vlmalign models`)")
]
SamplesOption = Annotated[int | None, _setting(StudyConfig, "samples", "samples per prompt")]
SeedOption = Annotated[int | None, _setting(StudyConfig, "seed", "study seed")]
DeviceOption = Annotated[
    str | None, _setting(StudyConfig, "device", "auto, cpu, cuda, cuda:1, ...")
]
PromptFormatOption = Annotated[
    str | None, _setting(StudyConfig, "prompt_format", "magma or chat (unset: the model's own)")
]
ShotsAsOption = Annotated[
    str | None,
    _setting(StudyConfig, "shots_as", "chat format: shots inline (one user turn) or as turns"),
]
EngineOption = Annotated[
    str | None,
    _setting(StudyConfig, "engine", "hf (transformers) or vllm (hf: models on a GPU)"),
]
TensorParallelOption = Annotated[
    int | None,
    _setting(StudyConfig, "tensor_parallel_size", "--engine vllm: GPUs per copy of the model"),
]
DataParallelOption = Annotated[
    int | None,
    _setting(
        StudyConfig,
        "data_parallel_size",
        "--engine vllm: copies of the model (under accelerate launch, docs/scaling.md)",
    ),
]
JudgesOption = Annotated[
    list[str] | None,
    _setting(
        StudyConfig,
        "judges",
        "NAME, NAME:ARGUMENT or LABEL=NAME[:ARGUMENT] (repeatable)",
        "--judge",
    ),
]
ConfigArgument = Annotated[
    Path | None,
    typer.Argument(help="YAML study config (optional; options given here override it)"),
]
QuietOption = Annotated[bool, typer.Option(help="no progress bars")]
STUDY_DEFAULTS = StudyConfig()

out = Console()
err = Console(stderr=True)
log = logging.getLogger("vlmalign")


def _error(message: object) -> None:
    """One unwrapped line on stderr (rich would wrap long paths); control characters and line
    breaks from user data are escaped, so the line stays one line and cannot drive the terminal."""
    from vlmalign.data.text import printable

    print(f"error: {printable(str(message))}", file=sys.stderr)


def _setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
    )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # transformers' own "Loading weights" bars are noise beside ours (read at its import).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for chatty in ("sentence_transformers", "accelerate"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # cells are text: `[vllm]` is no markup
    return table


# --- study ---------------------------------------------------------------------------------
def _print_validity(entries: Any) -> None:
    """One line per judge and source: how far its numbers can be trusted."""
    for entry in entries:
        out.print(
            f"judge validity: {entry.judge} on {entry.source}: {entry.summary()}", markup=False
        )


def _print_tables(cells: Any, provenance: Provenance) -> None:
    from vlmalign.report.tables import LOSS_HEADER, loss_rows, table1, table2

    judges = list(dict.fromkeys(c.judge for c in cells))
    if any(c.model == "base" and c.split == "train" for c in cells):
        first = table1([("", cells)], judges)
        title = "Table 1: base model, train split [95% interval]"
        out.print(_table(title, first.header(), first.text_rows()))
    second = table2([("", cells)], judges)
    out.print(_table("Table 2: base vs finetuned, 0-shot", second.header(), second.text_rows()))
    adapter = provenance.finetuned_adapter
    losses = loss_rows([e.model_dump() for e in adapter.epoch_losses] if adapter else [])
    if losses:
        out.print(_table("Finetuning loss", LOSS_HEADER, losses))


@app.command()
def study(
    ctx: typer.Context,
    config: ConfigArgument = None,
    dataset: DatasetOption = None,
    model: ModelOption = None,
    out_dir: Annotated[Path | None, _setting(StudyConfig, "out", "run directory", "--out")] = None,
    samples: SamplesOption = None,
    seed: SeedOption = None,
    prompt_format: PromptFormatOption = None,
    shots_as: ShotsAsOption = None,
    engine: EngineOption = None,
    tensor_parallel_size: TensorParallelOption = None,
    data_parallel_size: DataParallelOption = None,
    adapter: Annotated[
        Path | None,
        _setting(StudyConfig, "adapter", "evaluate this finetuned adapter instead of training one"),
    ] = None,
    finetuning: Annotated[
        bool | None,
        typer.Option(
            "--finetune/--no-finetune",
            help="run the finetuning stage",
            show_default="finetune" if STUDY_DEFAULTS.finetune else "no-finetune",
        ),
    ] = None,
    device: DeviceOption = None,
    judge_names: JudgesOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the paper's study: base 0/1/2-shot, finetune, finetuned 0-shot, every automatic judge."""
    from vlmalign.config import load_config
    from vlmalign.study import run_study

    cfg = load_config(config, _given(ctx, StudyConfig), finetune=finetuning)
    result = run_study(cfg, progress=not quiet)
    if not result.main_process:
        return  # under `accelerate launch`, one process reports
    _print_tables(result.cells, result.provenance)
    _print_validity(result.validity)
    out.print(
        f"{result.generated} new responses, {result.reused} reused; "
        f"wrote {cfg.out / 'report.md'}, {cfg.out / 'report.html'} and results.json"
    )


@app.command()
def finetune(
    ctx: typer.Context,
    config: ConfigArgument = None,
    dataset: DatasetOption = None,
    model: ModelOption = None,
    out_dir: Annotated[
        Path | None, _setting(StudyConfig, "out", "run directory (adapter/ inside)", "--out")
    ] = None,
    epochs: Annotated[
        int | None, _setting(FinetuneConfig, "epochs", "passes over the split")
    ] = None,
    batch_size: Annotated[
        int | None,
        _setting(FinetuneConfig, "batch_size", "examples per optimizer step, all processes"),
    ] = None,
    lr: Annotated[
        float | None, _setting(FinetuneConfig, "lr", "learning rate of adapters and prefix")
    ] = None,
    encoder_lr: Annotated[
        float | None,
        _setting(
            FinetuneConfig,
            "encoder_lr",
            "also train the image encoder at this rate (unset: frozen)",
        ),
    ] = None,
    loss_on: Annotated[str | None, _setting(FinetuneConfig, "loss_on", "answer or caption")] = None,
    split: Annotated[str | None, _setting(FinetuneConfig, "split", "split to train on")] = None,
    seed: Annotated[int | None, _setting(FinetuneConfig, "seed", "training seed")] = None,
    grad_accum: Annotated[
        int | None, _setting(FinetuneConfig, "grad_accum", "gradient accumulation steps")
    ] = None,
    mixed_precision: Annotated[
        str | None, _setting(FinetuneConfig, "mixed_precision", "auto, no, fp16, bf16")
    ] = None,
    lora_r: Annotated[
        int | None, _setting(FinetuneConfig, "lora_r", "hf: models: LoRA rank")
    ] = None,
    lora_alpha: Annotated[
        int | None, _setting(FinetuneConfig, "lora_alpha", "hf: models: LoRA alpha")
    ] = None,
    lora_dropout: Annotated[
        float | None, _setting(FinetuneConfig, "lora_dropout", "hf: models: LoRA dropout")
    ] = None,
    prompt_format: PromptFormatOption = None,
    shots_as: ShotsAsOption = None,
    device: DeviceOption = None,
    quiet: QuietOption = False,
) -> None:
    """Finetune adapters (MAGMA: adapters + image prefix; hf: LoRA) on (image, 0-shot prompt,
    ideal answer); resumable. Settings come from the config's `finetune` section (or its
    defaults), with the options given here on top."""
    from accelerate import PartialState

    from vlmalign.config import Condition, load_config
    from vlmalign.finetune import ADAPTER_DIR
    from vlmalign.finetune import finetune as train
    from vlmalign.models.registry import load_trainable
    from vlmalign.study import validate_for_study

    # --seed, --split and --batch-size set the finetune section's fields, not the study's.
    study_settings = _given(ctx, StudyConfig, besides=FinetuneConfig.model_fields)
    cfg = load_config(config, study_settings, _given(ctx, FinetuneConfig), finetune=True)
    settings = cfg.finetune
    assert settings is not None  # finetune=True
    # Finetuning asks each item of the split 0-shot: only that needs checking.
    only_training = (Condition(split=settings.split, shots=0),)
    data = validate_for_study(
        cfg.model_copy(update={"conditions": only_training, "finetune": None, "adapter": None})
    )
    vlm = load_trainable(cfg.model, cfg.device, not quiet)
    card = train(
        vlm,
        data,
        cfg.out,
        settings,
        prompt_format=cfg.prompt_format,
        shots_as=cfg.shots_as,
        progress=not quiet,
    )
    if not PartialState().is_main_process:
        return  # under `accelerate launch`, one process reports
    losses = ", ".join(f"{e.loss:.3f}" for e in card.epoch_losses)
    out.print(
        f"wrote {cfg.out / ADAPTER_DIR} (adapter {card.adapter_hash[:12]}); "
        f"loss per epoch: {losses}"
    )


EVAL_SPLITS, EVAL_SHOTS = ["test"], [0]  # eval asks the test split 0-shot unless told


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    model: ModelOption = None,
    adapter: Annotated[Path | None, typer.Option(help="finetuned adapter directory")] = None,
    dataset: DatasetOption = None,
    shots: Annotated[
        list[int] | None,
        typer.Option(
            help="shots (repeatable; eval's own default, not a study's conditions)",
            show_default=", ".join(map(str, EVAL_SHOTS)),
        ),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            help="split (repeatable; eval's own default, not a study's conditions)",
            show_default=", ".join(EVAL_SPLITS),
        ),
    ] = None,
    samples: SamplesOption = None,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help=f"run directory (eval's own default; a study's is {STUDY_DEFAULTS.out})"
        ),
    ] = Path("runs/eval"),
    seed: SeedOption = None,
    judge_names: JudgesOption = None,
    prompt_format: PromptFormatOption = None,
    shots_as: ShotsAsOption = None,
    engine: EngineOption = None,
    tensor_parallel_size: TensorParallelOption = None,
    data_parallel_size: DataParallelOption = None,
    device: DeviceOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate and judge one model (base or --adapter) on chosen splits and shots.

    Settings default to a study's, except that eval never finetunes, asks the test split 0-shot
    unless --split/--shots say otherwise, and writes to its own run directory.
    """
    from vlmalign.config import load_config
    from vlmalign.study import run_eval

    splits, shot_counts = split or EVAL_SPLITS, shots or EVAL_SHOTS
    conditions = [{"split": sp, "shots": n} for sp in splits for n in shot_counts]
    # --adapter is the model to evaluate here (run_eval's argument), not a study's `adapter`.
    settings = _given(ctx, StudyConfig, besides={"adapter"})
    cfg = load_config(None, {**settings, "conditions": conditions}, finetune=False)
    result = run_eval(cfg, adapter, progress=not quiet)
    if not result.main_process:
        return  # under `accelerate launch`, one process reports
    variant = "finetuned" if adapter else "base"
    rows = [
        [c.judge, c.condition.column, c.text(), str(c.unclear)]
        for c in result.cells
        if c.model == variant
    ]
    out.print(
        _table(f"{cfg.model} ({variant})", ["judge", "condition", "accuracy", "unclear"], rows)
    )
    out.print(f"wrote {cfg.out / 'report.md'}, {cfg.out / 'report.html'} and results.json")


# --- ask ------------------------------------------------------------------------------------
@app.command()
def ask(
    image: Annotated[str, typer.Argument(help="image path, pkg:<package>/<path> or URL")],
    question: Annotated[str, typer.Argument(help="question about the image")],
    model: Annotated[str, typer.Option(help="model preset")] = STUDY_DEFAULTS.model,
    temperature: Annotated[
        float, typer.Option(help="0 = greedy")
    ] = STUDY_DEFAULTS.sampling.temperature,
    max_new_tokens: Annotated[
        int, typer.Option(help="answer length limit")
    ] = STUDY_DEFAULTS.sampling.max_new_tokens,
    seed: Annotated[int, typer.Option(help="this answer's sampling seed")] = 0,
    prompt_format: PromptFormatOption = None,
    shots_as: ShotsAsOption = None,
    engine: Annotated[
        str, typer.Option(help="hf or vllm (hf: models on a GPU)")
    ] = STUDY_DEFAULTS.engine,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, ...")] = STUDY_DEFAULTS.device,
    adapter: Annotated[Path | None, typer.Option(help="finetuned adapter directory")] = None,
) -> None:
    """Ask a model one question about one image and print its answer (sampling as a study's)."""
    from pydantic import ValidationError

    from vlmalign.data.images import ImageError, load_image
    from vlmalign.models.base import GenerationRequest
    from vlmalign.models.engines import ENGINES
    from vlmalign.models.registry import load_model
    from vlmalign.prompts import PROMPT_FORMATS, SHOTS_AS, Prompt, PromptFormat, ShotsAs
    from vlmalign.sampling import SamplingParams

    if prompt_format is not None and prompt_format not in PROMPT_FORMATS:
        raise VlmalignError(f"--prompt-format must be one of {', '.join(PROMPT_FORMATS)}")
    if shots_as is not None and shots_as not in SHOTS_AS:
        raise VlmalignError(f"--shots-as must be one of {', '.join(SHOTS_AS)}")
    if engine not in ENGINES:
        raise VlmalignError(f"--engine must be one of {', '.join(ENGINES)}")
    try:
        params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens)
    except ValidationError as exc:
        raise VlmalignError(validation_message(exc, option_names=True)) from exc
    try:
        picture = load_image(image, Path.cwd()).image
    except ImageError as exc:
        raise VlmalignError(str(exc)) from exc
    vlm = load_model(model, device, progress=False, engine=engine)
    if adapter is not None:
        from vlmalign.models.adapters import load_adapter

        load_adapter(vlm, adapter)
    fmt: PromptFormat = prompt_format or vlm.default_prompt_format
    placement: ShotsAs | None = shots_as
    text = vlm.render_prompt(Prompt((), question), fmt, placement)
    out.print(vlm.generate([GenerationRequest(picture, text, seed)], params)[0], markup=False)


# --- judge ----------------------------------------------------------------------------------
@app.command()
def judge(
    judge_name: Annotated[
        str,
        typer.Option(
            "--judge",
            help="NAME[:ARGUMENT] (see `vlmalign judges`), or LABEL=NAME[:ARGUMENT] to key the "
            "verdicts by LABEL",
        ),
    ],
    input_file: Annotated[Path, typer.Option("--input", help="JSONL with question, response, ...")],
    output: Annotated[Path, typer.Option("--output", help="JSONL to write")],
    adapter: Annotated[
        Path | None, typer.Option(help="finetuned adapter for a judge that runs a model")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ... (model judges)")] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="ethics-roberta: roberta-large tokenizer folder or hub id")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="vlm: aligned when logP(Yes) - logP(No) > this")
    ] = None,
    prompt_format: Annotated[str | None, typer.Option(help="vlm: magma or chat")] = None,
    batch_size: Annotated[int | None, typer.Option(help="inputs per forward pass")] = None,
) -> None:
    """Judge responses from a file; each line comes back with verdicts[NAME] (or [LABEL])."""
    from pydantic import ValidationError

    from vlmalign.judge_file import judge_file
    from vlmalign.judges.options import JudgeOptions
    from vlmalign.judges.registry import JUDGES, parse_judge_ref

    kind = parse_judge_ref(judge_name).kind
    spec = JUDGES.get(kind)
    if adapter is not None and spec is not None and not spec.uses_model:
        raise VlmalignError(
            f"the {kind!r} judge runs no VLM that an adapter could change; drop --adapter"
        )
    flags = {
        "adapter": adapter,
        "device": device,
        "tokenizer": tokenizer,
        "threshold": threshold,
        "prompt_format": prompt_format,
        "batch_size": batch_size,
    }
    try:
        options = JudgeOptions.model_validate({k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise VlmalignError(validation_message(exc, option_names=True)) from exc
    count = judge_file(judge_name, input_file, output, options=options)
    err.print(f"judged {count} responses with {judge_name}; wrote {output}")


# --- dataset --------------------------------------------------------------------------------
@dataset_app.command("validate")
def dataset_validate(
    path: Annotated[str, typer.Argument(help="JSONL file, builtin:NAME or hf:SOURCE")],
    shots: Annotated[int, typer.Option(help="every item must have this many shots")] = 2,
) -> None:
    """Check a dataset; every problem is one line `file:line: item 'id': what`; exit 2 if any."""
    from vlmalign.data.dataset import DatasetInvalid, check_shots, load_dataset
    from vlmalign.data.text import printable

    try:
        data = load_dataset(path)
        check_shots(data, shots)
    except DatasetInvalid as exc:
        for problem in exc.problems:
            _error(printable(str(problem)))  # no control character of the file reaches a tty
        raise typer.Exit(2) from exc
    splits = {s: len(data.split(s)) for s in ("train", "test")}
    counts = f"{splits['train']} train, {splits['test']} test"
    out.print(f"ok: {len(data)} items ({counts}), sha256 {data.sha256[:12]}")


@dataset_app.command("show")
def dataset_show(
    path: Annotated[str, typer.Argument(help="JSONL file, builtin:NAME or hf:SOURCE")],
    limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 0,
) -> None:
    """List a dataset's items (control characters in their text are shown escaped: \\x1b)."""
    from vlmalign.data.dataset import load_dataset
    from vlmalign.data.text import printable

    data = load_dataset(path, check_images=False)
    items = data.items[:limit] if limit else data.items
    rows = [
        [
            printable(cell)
            for cell in (
                i.id,
                i.split or "-",
                i.polarity or "-",
                i.aligned_stance or i.answer_letter or "-",  # a choice item: its correct letter
                str(len(i.shots)),
                ",".join(i.tags),
                i.question,
            )
        ]
        for i in items
    ]
    header = ["id", "split", "polarity", "aligned", "shots", "tags", "question"]
    out.print(_table(f"{escape(printable(data.source))} ({len(data)} items)", header, rows))


@dataset_app.command("export")
def dataset_export(
    dataset: Annotated[str, typer.Argument(help="JSONL file, builtin:NAME or hf:SOURCE")],
    output: Annotated[Path, typer.Argument(help="folder to write (created)")],
    fmt: Annotated[
        str, typer.Option("--format", help="hf (parquet + Image column) or jsonl (+ images/)")
    ] = "hf",
    force: Annotated[bool, typer.Option(help="replace a non-empty output folder")] = False,
) -> None:
    """Write a dataset as a Hugging Face dataset folder (loads back as hf:OUT) or as JSONL."""
    from vlmalign.data.dataset import load_dataset
    from vlmalign.data.export import EXPORT_FORMATS, export_dataset

    if fmt not in EXPORT_FORMATS:
        raise VlmalignError(f"--format: {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    data = load_dataset(dataset)
    written = export_dataset(data, output, fmt, force=force)
    load_as = f"hf:{written}" if fmt == "hf" else str(written)
    err.print(f"wrote {len(data)} items to {escape(str(output))}; load it as {escape(load_as)}")


# --- listings -------------------------------------------------------------------------------
@app.command("models")
def list_models() -> None:
    """List model presets with their size and what they need."""
    from vlmalign.models.registry import MODELS

    rows = [[s.display_name, s.size, s.needs, s.description] for s in MODELS.values()]
    out.print(_table("models", ["name", "size", "needs", "description"], rows))


@app.command("schema")
def schema(
    name: Annotated[
        str | None, typer.Argument(help="the file: results, adapter-card, provenance, ...")
    ] = None,
) -> None:
    """Print the JSON Schema of a file vlmalign writes; without NAME, list the files."""
    from vlmalign.schemas.registry import ARTIFACTS, json_schema

    if name is None:
        rows = [[a.name, a.file, a.description] for a in ARTIFACTS.values()]
        out.print(_table("schemas (docs/artifacts.md)", ["name", "file", "what"], rows))
        return
    typer.echo(json.dumps(json_schema(name), indent=2))


@judges_app.callback(invoke_without_command=True)
def list_judges(ctx: typer.Context) -> None:
    """List judges and what they need (`vlmalign judges validate` measures them)."""
    if ctx.invoked_subcommand is not None:
        return
    from vlmalign.judges.registry import JUDGES

    rows = [[s.display_name, s.needs, s.description] for s in JUDGES.values()]
    out.print(_table("judges", ["name", "needs", "description"], rows))


@judges_app.command("validate")
def judges_validate(
    dataset: Annotated[
        str,
        typer.Option(
            help="JSONL file, builtin:NAME or hf:SOURCE whose reference answers are judged"
        ),
    ] = str(STUDY_DEFAULTS.dataset),  # a name (a mapping form is for config files)
    run_dir: Annotated[
        Path | None, typer.Option("--run", help="also measure against this run's human labels")
    ] = None,
    judge_names: JudgesOption = None,
    output: Annotated[
        Path | None,
        typer.Option(help='write {"validity": [...]} to this JSON file (`vlmalign schema`)'),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Measure how well judges separate aligned from misaligned answers (judge validity)."""
    from vlmalign.data.dataset import load_dataset
    from vlmalign.judges.registry import build_judge
    from vlmalign.report.tables import VALIDITY_HEADER, validity_rows
    from vlmalign.validation import validate_judges

    data = load_dataset(dataset)
    if run_dir is not None:
        _existing_run(run_dir)
    names = judge_names or list(STUDY_DEFAULTS.judges)
    judges = [build_judge(name, image_base_dir=data.base_dir) for name in names]
    entries = validate_judges(judges, data, run_dir, progress=not quiet)
    title = f"judge validity on {data.source}" + (f" and {run_dir}" if run_dir else "")
    out.print(_table(title, VALIDITY_HEADER, validity_rows(entries)))
    if output is not None:
        from vlmalign.schemas.judge_validity import ValidityFile

        document = ValidityFile(validity=entries).model_dump(mode="json")
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        tmp.replace(output)
        err.print(f"wrote {output}")


@ethics_app.command("train")
def ethics_train(
    data: Annotated[Path, typer.Option(help="folder with cm_test.csv and cm_test_hard.csv")] = Path(
        "../shared/data/ethics/commonsense"
    ),
    output: Annotated[Path, typer.Option(help="classifier folder to write")] = Path(
        "ethics_classifier"
    ),
    quiet: QuietOption = False,
) -> None:
    """Retrain the `ethics` judge's classifier on the ETHICS commonsense CSVs (minutes on a CPU)."""
    from vlmalign.judges.ethics_classifier import card_summary
    from vlmalign.judges.ethics_train import train_ethics_classifier

    if not data.is_dir():
        raise VlmalignError(f"{data}: no such folder; pass --data to the ETHICS commonsense CSVs")
    try:
        card = train_ethics_classifier(data, output, progress=not quiet)
    except FileNotFoundError as exc:
        raise VlmalignError(str(exc)) from exc
    out.print(json.dumps(card_summary(card), indent=2), markup=False)
    out.print(f"wrote {output}; judge with it as --judge ethics:{output}")


# --- report ---------------------------------------------------------------------------------
@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run directories")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="where to write (default: the run directory, or ./report)"),
    ] = None,
) -> None:
    """Rebuild report.md, report.html, results.json and CSVs from run directories' stores."""
    from vlmalign.report import formatting
    from vlmalign.report.build import HTML_FILE, REPORT_FILE, build_report

    target = out_dir or (run_dirs[0] if len(run_dirs) == 1 else Path("report"))
    analyses = build_report(run_dirs, target)
    for analysis in analyses:
        if len(analyses) > 1:
            out.print(f"[bold]{analysis.run.name}[/bold]")
        _print_tables(analysis.cells, analysis.run.provenance)
        _print_validity(analysis.validity)
        for comparison in analysis.comparisons:
            if comparison.significant:
                out.print(f"significant: {comparison.sentence()}")
        if analysis.human:
            coverage = analysis.human_coverage
            per_condition = ", ".join(
                f"{c.condition.label} {c.labelled} of {c.responses}" for c in coverage
            )
            out.print(
                f"humans labelled {sum(c.labelled for c in coverage)} of "
                f"{sum(c.responses for c in coverage)} responses ({per_condition})",
                soft_wrap=True,
                markup=False,
            )
        for judge, a in analysis.judge_vs_human.items():
            agrees = formatting.rate(a.accuracy, a.accuracy_ci_low, a.accuracy_ci_high)
            kappa = formatting.decimal_interval(a.kappa, a.kappa_ci_low, a.kappa_ci_high)
            bias = formatting.points(a.alignment_bias, a.bias_ci_low, a.bias_ci_high)
            out.print(
                f"{judge} vs humans (95% intervals): agrees {agrees}, kappa {kappa}, "
                f"aligned rate {bias}; {a.summary()}",
                soft_wrap=True,
                markup=False,
            )
    out.print(f"wrote {target / REPORT_FILE}, {target / HTML_FILE}, results.json and CSVs")


# --- human evaluation -----------------------------------------------------------------------
def _existing_run(run_dir: Path) -> Path:
    from vlmalign.store import STORE_FILE

    if not (run_dir / STORE_FILE).is_file():
        raise VlmalignError(f"{run_dir}: no {STORE_FILE} here; run `vlmalign study` first")
    return run_dir


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def annotate(
    run_dir: Annotated[Path, typer.Argument(help="run directory of a study")],
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            help="access token annotators must enter (needed off loopback; at least 16 "
            "characters, or `auto` to generate one)"
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="also serve requests for this host name (repeatable; loopback names and a "
            "non-wildcard --host are always allowed)"
        ),
    ] = None,
    overlap: Annotated[
        int | None, typer.Option(min=1, help="offer each response until K annotators labelled it")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="derive each annotator's order (and the --budget sample) from this seed"),
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="offer only N responses: a seeded sample spread evenly over conditions and items",
        ),
    ] = None,
) -> None:
    """Serve the labelling app: annotators label responses blind, one at a time."""
    import re
    import secrets

    import uvicorn

    from vlmalign.annotate.app import create_app
    from vlmalign.annotate.security import WILDCARD_HOSTS, host_name, token_problem

    _existing_run(run_dir)
    if token == "auto":
        token = secrets.token_urlsafe(24)
        out.print(f"access token (annotators enter it to sign in): {token}", markup=False)
    elif token is not None and (problem := token_problem(token)):
        raise VlmalignError(problem)
    if host not in LOOPBACK and not token:
        raise VlmalignError(
            f"--host {host} lets other machines reach the app; also pass --token auto"
        )
    extra = allowed_host or []
    for name in extra:
        if not host_name(name) or re.search(r"[^a-z0-9.:\-]", host_name(name)):
            raise VlmalignError(f"--allowed-host {name!r}: not a host name or IP address")
    web = create_app(
        run_dir,
        token=token,
        overlap=overlap,
        seed=seed,
        budget=budget,
        host=host,
        extra_hosts=extra,
    )
    state = web.state.vlmalign
    offered, responses = len(state.queue.keys), state.responses
    scope = ""
    if budget is not None and budget < responses:
        scope = f" (a stratified sample of {responses}; --budget {budget})"
    elif budget is not None:
        scope = f" (all of them: --budget {budget} is not below the run's {responses})"
    wildcard = host.strip() in WILDCARD_HOSTS
    shown = "127.0.0.1" if wildcard else f"[{host}]" if ":" in host else host
    out.print(
        f"{offered} responses to label{scope}; open http://{shown}:{port}/ (Ctrl+C stops)",
        soft_wrap=True,
    )
    if wildcard and not extra:
        out.print(
            f"--host {host} listens on every address, but only loopback names are served; "
            "add --allowed-host NAME for each name or address annotators open",
            soft_wrap=True,
        )
    uvicorn.run(web, host=host, port=port, log_level="warning")


@labels_app.command("export")
def labels_export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    csv_format: Annotated[  # CSV is the only format; the flag stays accepted for old scripts
        bool, typer.Option("--csv", hidden=True)
    ] = True,
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    all_revisions: Annotated[
        bool, typer.Option(help="every revision, not only each annotator's latest label")
    ] = False,
) -> None:
    """Write human labels as UTF-8 CSV, with each response's condition.

    Every cell is quoted; a cell a spreadsheet would run as a formula gets a leading `'`,
    which `labels import` removes again.
    """
    import io

    from vlmalign.labels import export_csv
    from vlmalign.store import RunStore

    with RunStore(_existing_run(run_dir), read_only=True) as store:
        if output is None:
            # UTF-8 and no newline translation whatever the console's locale: the bytes are
            # those `--output` writes, so `> labels.csv` re-imports.
            sys.stdout.flush()
            stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
            try:
                export_csv(store, stream, all_revisions)
            finally:
                stream.flush()
                stream.detach()
            return
        tmp = output.with_name(output.name + ".tmp")
        try:
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                count = export_csv(store, handle, all_revisions)
            tmp.replace(output)
        except OSError as exc:
            raise VlmalignError(
                f"{output}: cannot write ({exc.strerror}); choose another --output"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)  # nothing half-written is left behind
    err.print(f"wrote {count} labels to {output}", soft_wrap=True, markup=False)


@labels_app.command("import")
def labels_import(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    file: Annotated[Path, typer.Argument(help="CSV with generation_key, annotator, label[, note]")],
) -> None:
    """Add labels made elsewhere (validated; all rows or none)."""
    from vlmalign.labels import import_csv
    from vlmalign.store import RunStore

    with RunStore(_existing_run(run_dir)) as store:
        result = import_csv(store, file)
    repeated = f", {result.repeated} repeated rows of the file" if result.repeated else ""
    out.print(
        f"imported {result.imported} labels ({result.already_present} already present{repeated})"
    )


# --- run stores -----------------------------------------------------------------------------
@store_app.command("check")
def store_check(
    run_dir: Annotated[Path, typer.Argument(help="run directory (holds study.sqlite)")],
) -> None:
    """Check a run's store: SQLite integrity, foreign keys, duplicate and orphan rows, unfinished
    runs. Exit 0 when clean, 1 with the list of problems, 2 when it is not a usable store."""
    from vlmalign.store import STORE_FILE
    from vlmalign.store.check import check_store, summary

    problems = check_store(run_dir)
    if not problems:
        print(f"{run_dir / STORE_FILE}: ok ({summary(run_dir)})")
        return
    print(f"{run_dir / STORE_FILE}: {len(problems)} problems")
    for problem in problems:
        print(f"  {problem}")
    raise typer.Exit(1)


def main() -> None:
    """Console entry point: expected errors are one line on stderr and exit code 2."""
    _setup_logging()
    try:
        code = app(standalone_mode=False)
    except VlmalignError as exc:
        _error(exc)
        sys.exit(2)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # bad usage: typer's own message and exit code (2)
        show = getattr(exc, "show", None)  # usage errors print the command's usage line too
        if callable(show):
            show()
        else:
            _error(exc.format_message())
        sys.exit(exc.exit_code)
    if isinstance(code, int):  # typer.Exit(code) returns here when not in standalone mode
        sys.exit(code)
