"""Where the command writes: the consoles, the one-line error, logging, tables."""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)
log = logging.getLogger("vlmalign")


def print_error(message: object) -> None:
    """One unwrapped line on stderr (rich would wrap long paths); control characters and line
    breaks from user data are escaped, so the line stays one line and cannot drive the terminal,
    and a file name that is not UTF-8 shows its bytes (`\\xff`, `errors.shown_path`)."""
    from vlmalign.errors import shown_path

    print(f"error: {shown_path(str(message))}", file=sys.stderr)


def print_warning(message: object) -> None:
    """One unwrapped `warning: ...` line on stderr, escaped as `print_error`'s."""
    from vlmalign.errors import shown_path

    print(f"warning: {shown_path(str(message))}", file=sys.stderr)


def tolerate_unencodable_output() -> None:
    """Write what the terminal's encoding cannot hold as escapes (`\\udcff`), not raise: a
    file name that is not UTF-8 arrives from argv as surrogate escapes, and a path printed
    anywhere must not end the command with a traceback. (stderr does this already.)"""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure) and getattr(stream, "errors", None) == "strict":
            reconfigure(errors="backslashreplace")


def setup_logging(verbose: bool = False) -> None:
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
    # httpx logs every request an endpoint client makes at INFO.
    for chatty in ("sentence_transformers", "accelerate", "httpx", "httpx2", "openai"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def table(
    title: str, header: list[str], rows: list[list[str]], first_width: int | None = None
) -> Table:
    """A rich table of text cells; `first_width` keeps the first column at least that wide
    (names that should not wrap after a few letters)."""
    table = Table(title=title)
    for index, column in enumerate(header):
        table.add_column(column, min_width=first_width if index == 0 else None)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # cells are text: `[vllm]` is no markup
    return table
