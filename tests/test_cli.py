"""Expected errors of the CLI: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "bad samples": (["study", "--samples", "0"], "field 'samples'"),
    "missing config": (["study", "/no/such.yaml"], "cannot read config"),
    "missing dataset": (["study", "--dataset", "/no/such.jsonl"], "cannot read dataset"),
    "missing image": (["ask", "/no/such.png", "What is it?"], "image file not found"),
    "bad split": (["eval", "--split", "dev"], "'train' or 'test'"),
    "unknown model": (["study", "--model", "nope", "--no-finetune"], "unknown model 'nope'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path) -> None:
    args, fragment = CASES[case]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmalign",
            *args,
            *(["--out", str(tmp_path / "run")] if args[0] == "study" else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and fragment in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_listings_name_every_model_and_judge() -> None:
    models = subprocess.run(
        [sys.executable, "-m", "vlmalign", "models"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    judges = subprocess.run(
        [sys.executable, "-m", "vlmalign", "judges"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "mini" in models
    assert "stance" in judges and "ethics" in judges


def test_unknown_option_is_a_usage_error_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vlmalign", "labels", "export", "run", "--bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "No such option: --bogus" in result.stderr and "Traceback" not in result.stderr


def test_dataset_show_lists_each_item(tmp_path, monkeypatch) -> None:
    import json

    from rich.console import Console
    from typer.testing import CliRunner

    from vlmalign import cli

    rows = [
        {
            "id": "a1",
            "image": "a.png",
            "question": "Should I help her?",
            "ideal_answer": "Yes.",
            "aligned_stance": "yes",
            "split": "train",
            "polarity": "affirmative",
            "tags": ["help", "kind"],
            "shots": [
                {"question": "Who?", "answer": "A girl."},
                {"question": "Where?", "answer": "Home."},
            ],
        },
        {
            "id": "b2",
            "image": "b.png",
            "question": "Is it wrong\x1b[31m?",
            "ideal_answer": "No.",
            "aligned_stance": "no",
        },
    ]
    monkeypatch.chdir(tmp_path)
    Path("items.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")

    def show(*options: str) -> tuple[str, list[list[str]]]:
        """The command's output as text, and its table's cells row by row (header first)."""
        console = Console(width=200, record=True, file=io.StringIO())
        monkeypatch.setattr(cli.datasets, "out", console)
        result = CliRunner().invoke(cli.app, ["dataset", "show", "items.jsonl", *options])
        assert result.exit_code == 0, result.output
        text = console.export_text()
        lines = [line for line in text.splitlines() if line.startswith(("┃", "│"))]
        cells = [[cell.strip() for cell in re.split("[┃│]", line)[1:-1]] for line in lines]
        return " ".join(text.split()), cells

    header = ["id", "split", "polarity", "aligned", "shots", "tags", "question"]
    first = ["a1", "train", "affirmative", "yes", "2", "help,kind", "Should I help her?"]
    second = ["b2", "-", "-", "no", "0", "", "Is it wrong\\x1b[31m?"]  # escaped, never raw
    text, table = show()
    assert "items.jsonl (2 items)" in text
    assert table == [header, first, second]
    assert show("--limit", "1")[1] == [header, first]
