"""`judge`, `judges [validate]` and `ethics train`: judges and how far they can be trusted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vlmalign.cli.apps import app, ethics_app, judges_app
from vlmalign.cli.console import err, out, table
from vlmalign.cli.options import STUDY_DEFAULTS, JudgesOption, QuietOption
from vlmalign.errors import VlmalignError, validation_message


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
    """Judge responses from a file; each line comes back with verdicts[NAME] (or [LABEL]).

    The input is JSONL, one object a line (docs/judge-input.md):
    question (required): the question asked;
    response (required): the answer to judge;
    aligned_stance: "yes" or "no", the aligned answer to a yes/no question;
    choices, correct_choice: a multiple-choice item's options and the correct one (1 or "B");
    id: the item's id;
    prompt: the whole text the model was asked (default: the question);
    image: path (relative to the input file), pkg:... or URL, for judges that look at it;
    verdicts: earlier verdicts, kept (the new one is added);
    meta: anything of yours, kept as it is.

    Any other key is an error. Every problem of the file is listed, `file:line: ...`, and
    nothing is written (exit 2).
    """
    from pydantic import ValidationError

    from vlmalign.cli.datasets import print_count, print_problems
    from vlmalign.data.dataset import DatasetInvalid
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
    try:
        count = judge_file(judge_name, input_file, output, options=options)
    except DatasetInvalid as exc:  # every problem of the file, one line each
        print_problems(exc.problems)
        print_count(len(exc.problems), 0)
        raise typer.Exit(2) from exc
    err.print(f"judged {count} responses with {judge_name}; wrote {output}")


@judges_app.callback(invoke_without_command=True)
def list_judges(ctx: typer.Context) -> None:
    """List judges and what they need (`vlmalign judges validate` measures them)."""
    if ctx.invoked_subcommand is not None:
        return
    from vlmalign.judges.registry import JUDGES

    rows = [
        [spec.display_name, str(JUDGES.origin(name)), spec.needs, spec.description]
        for name, spec in JUDGES.items()
    ]
    out.print(table("judges", ["name", "package", "needs", "description"], rows, first_width=18))


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
    from vlmalign.cli.runs import existing_run
    from vlmalign.data.dataset import load_dataset
    from vlmalign.judges.registry import build_judge
    from vlmalign.report.tables import VALIDITY_HEADER, validity_rows
    from vlmalign.validation import validate_judges

    data = load_dataset(dataset)
    if run_dir is not None:
        existing_run(run_dir)
    names = judge_names or list(STUDY_DEFAULTS.judges)
    judges = [build_judge(name, image_base_dir=data.base_dir) for name in names]
    entries = validate_judges(judges, data, run_dir, progress=not quiet)
    title = f"judge validity on {data.source}" + (f" and {run_dir}" if run_dir else "")
    out.print(table(title, VALIDITY_HEADER, validity_rows(entries)))
    if output is not None:
        from vlmalign.schemas.judge_validity import ValidityFile

        document = ValidityFile(validity=entries).model_dump(mode="json")
        from vlmalign.atomic import write_text

        write_text(output, json.dumps(document, indent=2) + "\n")
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


@ethics_app.command("calibrate")
def ethics_calibrate(
    classifier: Annotated[Path, typer.Argument(help="classifier folder (from `ethics train`)")],
    dataset: Annotated[
        str, typer.Option(help="yes/no items to fit on (never the dataset you will judge)")
    ],
) -> None:
    """Fit how the classifier's P(wrong) reads for question scenarios on a development set.

    The dataset is recorded in the card as one that informed the judge: validity measured on it
    is reported as optimistic.
    """
    from vlmalign.judges.ethics_train import calibrate_for_questions

    if not (classifier / "card.json").is_file():
        raise VlmalignError(f"{classifier}: no card.json here; pass a folder from `ethics train`")
    try:
        card = calibrate_for_questions(classifier, dataset)
    except ValueError as exc:
        raise VlmalignError(str(exc)) from exc
    calibration = card.question_calibration
    assert calibration is not None
    out.print(
        f"fit on {calibration.n} scenarios ({calibration.n_wrong} wrong): P(wrong) "
        f"{calibration.wrong_threshold:.3f} now reads as undecided; wrote {classifier}/card.json",
        markup=False,
    )
