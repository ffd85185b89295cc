"""`dataset validate`, `dataset show` and `dataset export`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from vlmalign.cli.apps import dataset_app
from vlmalign.cli.console import err, out, table
from vlmalign.errors import VlmalignError

if TYPE_CHECKING:
    from vlmalign.data.dataset import Shots
    from vlmalign.data.schema import Split
    from vlmalign.data.spec import DatasetSpec


SHOWN_PROBLEMS = 50
"""`dataset validate` and `judge` print this many problems, then how many more there are."""

CONFIG_SUFFIXES = (".yaml", ".yml")


def print_problems(errors: Sequence[object], warnings: Sequence[object] = ()) -> None:
    """Each problem as one line on stderr, `error: ...` then `warning: ...`, each kind in file
    order; up to SHOWN_PROBLEMS of them, then `… and N more`."""
    from vlmalign.data.text import printable

    lines = [f"error: {e}" for e in errors] + [f"warning: {w}" for w in warnings]
    for line in lines[:SHOWN_PROBLEMS]:
        print(printable(line), file=sys.stderr)  # no control character of a file reaches a tty
    if len(lines) > SHOWN_PROBLEMS:
        print(f"… and {len(lines) - SHOWN_PROBLEMS} more", file=sys.stderr)
    sys.stderr.flush()  # before what follows on stdout, on a terminal too


def print_count(errors: int, warnings: int) -> None:
    """The last line, when there are problems: `3 problems (2 errors, 1 warning)` on stdout."""
    if errors or warnings:
        out.print(problem_count(errors, warnings), markup=False, soft_wrap=True)


def problem_count(errors: int, warnings: int) -> str:
    """`3 problems (2 errors, 1 warning)`, `1 problem (1 warning)`."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    kinds = [count(n, word) for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return f"{count(errors + warnings, 'problem')} ({', '.join(kinds)})"


@dataset_app.command("validate")
def dataset_validate(
    path: Annotated[
        str,
        typer.Argument(
            help="JSONL file, builtin:NAME, hf:SOURCE, or a study config (.yaml): its dataset"
        ),
    ],
    shots: Annotated[
        int | None,
        typer.Option(
            help="every item must have this many shots (default: 2; for a study config, what "
            "its conditions ask of each split)",
            min=0,
        ),
    ] = None,
) -> None:
    """Check a dataset and print every problem at once, one line each, `file:line: item 'id':
    what`: errors (exit 2) and warnings (a reference answer the stance judge cannot read, an
    empty split)."""
    from vlmalign.data.dataset import DatasetInvalid
    from vlmalign.data.text import printable
    from vlmalign.dataset_checks import validate_dataset
    from vlmalign.errors import DatasetError

    config = _study_config(path)
    source: str | DatasetSpec | None = path
    needed: Shots = 2 if shots is None else shots
    errors: list[VlmalignError] = []
    if config is not None:
        source, needed, errors = _config_dataset(config, shots)
    warnings: list[DatasetError] = []
    data = None
    if source is not None:
        try:
            data = validate_dataset(source, shots=needed)
            warnings = list(data.warnings)
        except DatasetInvalid as exc:
            errors += exc.problems
            warnings = exc.warnings
        except DatasetError as exc:  # the file as a whole: unreadable, not UTF-8, no such hf:
            errors.append(exc)
    print_problems(errors, warnings)
    if errors or data is None:
        print_count(len(errors), len(warnings))
        raise typer.Exit(2)
    splits = {s: len(data.split(s)) for s in ("train", "test")}
    counts = f"{splits['train']} train, {splits['test']} test"
    named = f"{data.source} (the dataset of {config}): " if config is not None else ""
    ok = f"ok: {named}{len(data)} items ({counts}), sha256 {data.sha256[:12]}"
    out.print(printable(ok), markup=False, soft_wrap=True)
    print_count(0, len(warnings))


def _study_config(path: str) -> Path | None:
    """`path` as a study config file: a .yaml/.yml file, or any other file that reads as a YAML
    mapping with a `dataset:` key (a JSONL file's first line is a JSON object: never)."""
    from vlmalign.config import read_config_file
    from vlmalign.data.sources import registered_source
    from vlmalign.data.spec import is_hf_source

    if is_hf_source(path) or registered_source(path) is not None:
        return None
    candidate = Path(path)
    suffix = candidate.suffix.lower()
    if suffix in CONFIG_SUFFIXES:
        return candidate
    if suffix in (".jsonl", ".json"):
        return None
    try:
        with candidate.open("rb") as handle:
            start = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except (OSError, ValueError):
        return None  # `validate_dataset` says why it cannot be read
    if not start or start.startswith(b"{"):
        return None
    try:
        settings = read_config_file(candidate)
    except VlmalignError:
        return None
    return candidate if "dataset" in settings else None


def _config_dataset(
    config: Path, shots: int | None
) -> tuple[str | DatasetSpec | None, Shots, list[VlmalignError]]:
    """The dataset a study config reads (None if its `dataset:` is invalid), the shots each
    split must have (`--shots` for every item, else what the study would ask), and the
    config's problems."""
    from pydantic import ValidationError

    from vlmalign.config import StudyConfig, load_config, read_config_file
    from vlmalign.data.spec import DatasetSpec
    from vlmalign.data.text import printable
    from vlmalign.errors import DatasetError, validation_messages

    name = printable(str(config))
    try:
        settings = read_config_file(config)
    except VlmalignError as exc:
        return None, 0, [exc]
    value = settings.get("dataset", StudyConfig.model_fields["dataset"].default)
    if isinstance(value, str) and value:
        source: str | DatasetSpec = value
    elif isinstance(value, dict):
        try:
            source = DatasetSpec.model_validate(value)
        except ValidationError as exc:
            messages = validation_messages(exc, model=DatasetSpec)
            return None, 0, [DatasetError(name, None, None, f"dataset: {m}") for m in messages]
    else:
        message = "dataset: give a source (JSONL file, builtin:NAME, hf:...) or a mapping"
        return None, 0, [DatasetError(name, None, None, message)]
    if shots is not None:
        return source, shots, []
    try:
        study = load_config(config)  # the conditions a study with this config asks
    except VlmalignError as exc:
        return source, 0, [exc]
    conditions = list(study.conditions)
    if study.finetune is not None or study.adapter is not None:
        conditions += study.finetuned_conditions
    needed: dict[Split, int] = {}
    for condition in conditions:
        needed[condition.split] = max(needed.get(condition.split, 0), condition.shots)
    return source, needed, []


@dataset_app.command("sources")
def list_sources() -> None:
    """List the dataset sources a `--dataset NAME:ARGUMENT` can name (vlmalign's and plugins');
    a plain path is a JSONL file, and `hf:` a Hugging Face dataset (docs/datasets.md)."""
    from vlmalign.data.sources import DATASET_SOURCES

    rows = [
        [spec.display_name, str(DATASET_SOURCES.origin(name)), spec.needs, spec.description]
        for name, spec in DATASET_SOURCES.items()
    ]
    header = ["name", "package", "needs", "description"]
    out.print(table("dataset sources", header, rows, first_width=18))


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
    out.print(table(f"{escape(printable(data.source))} ({len(data)} items)", header, rows))


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
