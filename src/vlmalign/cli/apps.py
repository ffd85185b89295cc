"""The `vlmalign` command and its groups; the commands register themselves on them."""

from __future__ import annotations

import typer

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
responses_app = typer.Typer(
    help="Export every response of a run with its verdicts and labels.", no_args_is_help=True
)
app.add_typer(responses_app, name="responses")
app.add_typer(ethics_app, name="ethics")
app.add_typer(judges_app, name="judges")
store_app = typer.Typer(help="Check run stores (study.sqlite).", no_args_is_help=True)
app.add_typer(store_app, name="store")
