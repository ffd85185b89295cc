"""`responses export`: every response of a run, with its verdicts and labels, as JSONL or CSV."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TextIO

import typer

from vlmalign.cli.apps import responses_app
from vlmalign.cli.console import err
from vlmalign.cli.runs import existing_run
from vlmalign.errors import VlmalignError, utf8_name_problem


@responses_app.command("export")
def responses_export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="jsonl (one JSON object a line, typed) or csv (every cell quoted)"
        ),
    ] = "jsonl",
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
) -> None:
    """Write every response of a run, one row each, with its verdicts and labels.

    The responses of the newest finished study run, with each judge's verdict (J.aligned,
    J.score, J.answer, J.explanation), the human majority and every annotator's latest label.
    UTF-8; in CSV a cell a spreadsheet would run as a formula gets a leading `'`.
    """
    from vlmalign.report.responses import FORMATS, write_responses
    from vlmalign.report.run_data import load_run

    if fmt not in FORMATS:
        raise VlmalignError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    # Each row names the run by its folder, in UTF-8 text.
    if problem := utf8_name_problem(run_dir.resolve().name, "the run directory's name"):
        raise VlmalignError(problem)
    run = load_run(existing_run(run_dir))
    if output is None:
        # UTF-8 and no newline translation whatever the console's locale: the bytes are those
        # `--output` writes.
        sys.stdout.flush()
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            write_responses(run, stream, fmt)
        except BrokenPipeError:  # the reader stopped early (`| head`): what it read is whole
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            stream.flush()
            stream.detach()
        return
    count = _write_atomically(output, lambda handle: write_responses(run, handle, fmt))
    err.print(f"wrote {count} responses to {output}", soft_wrap=True, markup=False)


def _write_atomically(output: Path, write: Callable[[TextIO], int]) -> int:
    """Write through a temporary file renamed over `output` (`atomic.atomic_write`): a reader
    never sees half a file and a failed export leaves nothing behind."""
    from vlmalign.atomic import atomic_write

    try:
        with atomic_write(output, newline="") as handle:
            return write(handle)
    except OSError as exc:
        raise VlmalignError(
            f"{output}: cannot write ({exc.strerror}); choose another --output"
        ) from exc
