"""The README's step-by-step block runs as written, in a fresh folder, as a new user would."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

SECTION = "## Your own study, step by step"


def quickstart() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```bash\n(.*?)```", text.split(SECTION, 1)[1], flags=re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_readme_mentions_what_a_researcher_needs() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for what in ("mock:", "hf:", "choice", "dataset export", "examples/moralise.yaml"):
        assert what in text, what


def test_the_step_by_step_block_runs(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)  # where this environment's `vlmalign` is
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", quickstart()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "quickstart"
    compared = (folder / "runs" / "compare" / "comparisons.csv").read_text(encoding="utf-8")
    assert "misaligned" in compared  # the between-run rows
    with (folder / "responses.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 1 + 3 * 5  # a header, then 3 items x 5 samples
    assert (folder / "hf-items").is_dir()
