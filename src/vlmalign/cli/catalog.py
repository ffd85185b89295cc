"""`models` and `schema`: what vlmalign offers and the files it writes."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vlmalign.cli.apps import app
from vlmalign.cli.console import out, table


@app.command("models")
def list_models() -> None:
    """List models (vlmalign's and plugins') with what they can do and need."""
    from vlmalign.models.registry import MODELS
    from vlmalign.models.spec import CAPABILITIES

    rows = [
        [
            spec.display_name,
            str(MODELS.origin(name)),
            ", ".join(c for c in CAPABILITIES if c in spec.capabilities),
            spec.needs,
            f"{spec.description} (size: {spec.size})",
        ]
        for name, spec in MODELS.items()
    ]
    header = ["name", "package", "can", "needs", "description"]
    out.print(table("models", header, rows, first_width=18))


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
        out.print(table("schemas (docs/artifacts.md)", ["name", "file", "what"], rows))
        return
    typer.echo(json.dumps(json_schema(name), indent=2))
