"""`study`, `finetune`, `eval` and `ask`: the commands that run a model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vlmalign.cli.apps import app
from vlmalign.cli.console import out, table
from vlmalign.cli.options import (
    STUDY_DEFAULTS,
    ApiKeyEnvOption,
    BaseUrlOption,
    ConfigArgument,
    DataParallelOption,
    DatasetOption,
    DeviceOption,
    EngineOption,
    JudgesOption,
    MaxConcurrencyOption,
    MaxRetriesOption,
    ModelOption,
    PromptFormatOption,
    QuietOption,
    RequestsPerMinuteOption,
    SamplesOption,
    SeedOption,
    ShotsAsOption,
    TensorParallelOption,
    TimeoutOption,
    given,
    setting,
)
from vlmalign.config import FinetuneConfig, StudyConfig
from vlmalign.errors import VlmalignError, shown_path, validation_message
from vlmalign.models.endpoint import EndpointSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vlmalign.report.across_runs import AcrossRuns
    from vlmalign.schemas.provenance import Provenance
    from vlmalign.schemas.results import UsageRecord


# --- study ---------------------------------------------------------------------------------
def print_validity(entries: Any) -> None:
    """One line per judge and source: how far its numbers can be trusted."""
    for entry in entries:
        out.print(
            f"judge validity: {entry.judge} on {entry.source}: {entry.summary()}", markup=False
        )


def print_usage(usage: Sequence[UsageRecord]) -> None:
    """Responses, tokens and refusals per condition (nothing from an in-process model)."""
    from vlmalign.report.tables import USAGE_HEADER, USAGE_NOTE, USAGE_TITLE, usage_rows

    rows = usage_rows(usage)
    if rows:
        out.print(table(USAGE_TITLE, USAGE_HEADER, rows))
        out.print(USAGE_NOTE, markup=False, soft_wrap=True)


def print_tables(cells: Any, provenance: Provenance, usage: Sequence[UsageRecord] = ()) -> None:
    """The results as the report lays them out (the paper's tables or one of conditions)."""
    from vlmalign.report.tables import LOSS_HEADER, loss_rows, result_tables

    judges = list(dict.fromkeys(c.judge for c in cells))
    tables = result_tables([("", cells)], judges)
    for titled in tables:
        shown = titled.table
        out.print(table(f"{titled.title} [95% interval]", shown.header(), shown.text_rows()))
    if any(titled.table.calibrated for titled in tables):
        from vlmalign.report.markdown import calibrated_note

        out.print(calibrated_note(cells), markup=False, soft_wrap=True)
    adapter = provenance.finetuned_adapter
    losses = loss_rows([e.model_dump() for e in adapter.epoch_losses] if adapter else [])
    if losses:
        out.print(table("Finetuning loss", LOSS_HEADER, losses))
    print_usage(usage)


def print_across(across: AcrossRuns) -> None:
    """Several runs: the leaderboard and the between-run tests, once (not every run's tables)."""
    from vlmalign.report.texts import comparison_sentence, shared_items_sentence

    board = across.leaderboard
    out.print(table("Leaderboard [95% interval]", board.header(), board.text_rows()))
    for shared in across.shared:
        out.print(shared_items_sentence(shared).replace("`", ""), markup=False, soft_wrap=True)
    for comparison in across.comparisons:  # sentences: the table is too wide for a console
        out.print(f"between runs: {comparison_sentence(comparison)}", markup=False, soft_wrap=True)


@app.command()
def study(
    ctx: typer.Context,
    config: ConfigArgument = None,
    dataset: DatasetOption = None,
    model: ModelOption = None,
    out_dir: Annotated[Path | None, setting(StudyConfig, "out", "run directory", "--out")] = None,
    samples: SamplesOption = None,
    seed: SeedOption = None,
    prompt_format: PromptFormatOption = None,
    shots_as: ShotsAsOption = None,
    engine: EngineOption = None,
    tensor_parallel_size: TensorParallelOption = None,
    data_parallel_size: DataParallelOption = None,
    adapter: Annotated[
        Path | None,
        setting(StudyConfig, "adapter", "evaluate this finetuned adapter instead of training one"),
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
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    max_concurrency: MaxConcurrencyOption = None,
    requests_per_minute: RequestsPerMinuteOption = None,
    timeout_s: TimeoutOption = None,
    max_retries: MaxRetriesOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run the paper's study: base 0/1/2-shot, finetune, finetuned 0-shot, every automatic judge."""
    from vlmalign.config import load_config
    from vlmalign.study import run_study

    cfg = load_config(
        config,
        given(ctx, StudyConfig),
        finetune=finetuning,
        api_overrides=given(ctx, EndpointSettings),
    )
    result = run_study(cfg, progress=not quiet)
    if not result.main_process:
        return  # under `accelerate launch`, one process reports
    print_tables(result.cells, result.provenance, result.usage)
    print_validity(result.validity)
    out.print(
        f"{result.generated} new responses, {result.reused} reused; "
        f"wrote {shown_path(cfg.out / 'report.md')}, {shown_path(cfg.out / 'report.html')} "
        "and results.json",
        markup=False,
    )


@app.command()
def finetune(
    ctx: typer.Context,
    config: ConfigArgument = None,
    dataset: DatasetOption = None,
    model: ModelOption = None,
    out_dir: Annotated[
        Path | None, setting(StudyConfig, "out", "run directory (adapter/ inside)", "--out")
    ] = None,
    epochs: Annotated[
        int | None, setting(FinetuneConfig, "epochs", "passes over the split")
    ] = None,
    batch_size: Annotated[
        int | None,
        setting(FinetuneConfig, "batch_size", "examples per optimizer step, all processes"),
    ] = None,
    lr: Annotated[
        float | None, setting(FinetuneConfig, "lr", "learning rate of adapters and prefix")
    ] = None,
    encoder_lr: Annotated[
        float | None,
        setting(
            FinetuneConfig,
            "encoder_lr",
            "also train the image encoder at this rate (unset: frozen)",
        ),
    ] = None,
    loss_on: Annotated[str | None, setting(FinetuneConfig, "loss_on", "answer or caption")] = None,
    split: Annotated[str | None, setting(FinetuneConfig, "split", "split to train on")] = None,
    seed: Annotated[int | None, setting(FinetuneConfig, "seed", "training seed")] = None,
    grad_accum: Annotated[
        int | None, setting(FinetuneConfig, "grad_accum", "gradient accumulation steps")
    ] = None,
    mixed_precision: Annotated[
        str | None, setting(FinetuneConfig, "mixed_precision", "auto, no, fp16, bf16")
    ] = None,
    lora_r: Annotated[
        int | None, setting(FinetuneConfig, "lora_r", "hf: models: LoRA rank")
    ] = None,
    lora_alpha: Annotated[
        int | None, setting(FinetuneConfig, "lora_alpha", "hf: models: LoRA alpha")
    ] = None,
    lora_dropout: Annotated[
        float | None, setting(FinetuneConfig, "lora_dropout", "hf: models: LoRA dropout")
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
    from vlmalign.study_checks import validate_for_study

    # --seed, --split and --batch-size set the finetune section's fields, not the study's.
    study_settings = given(ctx, StudyConfig, besides=FinetuneConfig.model_fields)
    cfg = load_config(config, study_settings, given(ctx, FinetuneConfig), finetune=True)
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
    state = PartialState()
    state.destroy_process_group()  # nothing collective is left (as `Processes.leave`)
    if not state.is_main_process:
        return  # under `accelerate launch`, one process reports
    losses = ", ".join(f"{e.loss:.3f}" for e in card.epoch_losses)
    out.print(
        f"wrote {shown_path(cfg.out / ADAPTER_DIR)} (adapter {card.adapter_hash[:12]}); "
        f"loss per epoch: {losses}",
        markup=False,
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
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    max_concurrency: MaxConcurrencyOption = None,
    requests_per_minute: RequestsPerMinuteOption = None,
    timeout_s: TimeoutOption = None,
    max_retries: MaxRetriesOption = None,
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
    settings = given(ctx, StudyConfig, besides={"adapter"})
    cfg = load_config(
        None,
        {**settings, "conditions": conditions},
        finetune=False,
        api_overrides=given(ctx, EndpointSettings),
    )
    result = run_eval(cfg, adapter, progress=not quiet)
    if not result.main_process:
        return  # under `accelerate launch`, one process reports
    from vlmalign.report.texts import cell_text

    variant = "finetuned" if adapter else "base"
    rows = [
        [c.judge, c.condition.column, cell_text(c), str(c.unclear)]
        for c in result.cells
        if c.model == variant
    ]
    out.print(
        table(f"{cfg.model} ({variant})", ["judge", "condition", "accuracy", "unclear"], rows)
    )
    print_usage(result.usage)
    out.print(
        f"wrote {shown_path(cfg.out / 'report.md')}, {shown_path(cfg.out / 'report.html')} "
        "and results.json",
        markup=False,
    )


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
    base_url: BaseUrlOption = None,
    api_key_env: ApiKeyEnvOption = None,
    timeout_s: TimeoutOption = None,
    max_retries: MaxRetriesOption = None,
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
    try:
        endpoint = {
            "base_url": base_url,
            "api_key_env": api_key_env,
            "timeout_s": timeout_s,
            "max_retries": max_retries,
        }
        api = EndpointSettings.model_validate({k: v for k, v in endpoint.items() if v is not None})
    except ValidationError as exc:
        raise VlmalignError(validation_message(exc, option_names=True)) from exc
    vlm = load_model(model, device, progress=False, engine=engine, api=api)
    if adapter is not None:
        from vlmalign.models.adapters import load_adapter

        load_adapter(vlm, adapter)
    fmt: PromptFormat = prompt_format or vlm.default_prompt_format
    placement: ShotsAs | None = shots_as
    prompt = Prompt((), question)
    text = vlm.render_prompt(prompt, fmt, placement)
    request = GenerationRequest(
        picture, text, seed, prompt=prompt, prompt_format=fmt, shots_as=placement
    )
    out.print(vlm.generate([request], params)[0], markup=False)
