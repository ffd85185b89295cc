"""Expected errors of the CLI: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

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
