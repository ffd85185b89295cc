"""The `vlmalign` command: parses arguments, calls the library, prints results.

`apps.py` holds the command and its groups, `options.py` the options that set config fields,
`console.py` the output; each other module registers a few commands. Nothing here imports
torch at the top: each command imports what it needs when it runs.
"""

from __future__ import annotations

import sys

import typer

# Importing a module registers its commands, in the order `vlmalign --help` lists them.
from vlmalign.cli import studies, judging, datasets, catalog, runs, responses  # noqa: F401  # isort: skip
from vlmalign.cli.apps import app
from vlmalign.cli.console import err, print_error, setup_logging, tolerate_unencodable_output
from vlmalign.errors import VlmalignError

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: expected errors are one line on stderr and exit code 2."""
    setup_logging()
    tolerate_unencodable_output()
    try:
        code = app(standalone_mode=False)
    except VlmalignError as exc:
        print_error(exc)
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
            print_error(exc.format_message())
        sys.exit(exc.exit_code)
    if isinstance(code, int):  # typer.Exit(code) returns here when not in standalone mode
        sys.exit(code)
