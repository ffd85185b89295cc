"""`dataset validate`, `dataset show` and `dataset export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vlmalign.cli.apps import dataset_app
from vlmalign.cli.console import err, out, print_error, table
from vlmalign.errors import VlmalignError


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
            print_error(printable(str(problem)))  # no control character of the file reaches a tty
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
