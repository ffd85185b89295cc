"""A response that hides text behind bidi controls shows them escaped in report.html."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from typer.testing import CliRunner

from vlmalign.cli import app

OVERRIDE = "\u202eseY\u202c"  # displays as "Yes" when the controls act


def test_report_html_shows_bidi_controls_escaped(tmp_path: Path) -> None:
    source = resources.files("vlmalign.data") / "builtin" / "moral-vqa-40.jsonl"
    ids = [json.loads(line)["id"] for line in source.read_text().splitlines() if line]
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        "".join(json.dumps({"item": i, "response": OVERRIDE}) + "\n" for i in ids),
        encoding="utf-8",
    )
    run = tmp_path / "run"
    args = ["study", "--model", f"mock:{answers}", "--judge", "stance", "--samples", "1"]
    result = CliRunner().invoke(app, [*args, "--no-finetune", "--quiet", "--out", str(run)])
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "\u202e" not in page and "\u202c" not in page
    assert "\\u202eseY\\u202c" in page  # each control written out where the response is shown
