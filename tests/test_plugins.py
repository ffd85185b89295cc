"""Plugins by entry points, as docs/plugins.md tells a newcomer to write one.

The example package is built from the files docs/plugins.md shows, installed with pip (into a
folder of its own, put on PYTHONPATH), and every command of the page is run in a fresh process.
Expected figures come from the built-in dataset's file: the parrot answers "No." to everything,
so a judge reading it finds aligned exactly the items whose aligned stance is "no".
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r"\*\*`([^`]+)`\*\*[^\n]*\n\n```\w*\n(.*?)```", re.DOTALL)
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
PYTHON_BLOCK = re.compile(r"(\*\*`[^`]+`\*\*[^\n]*\n\n)?```python\n(.*?)```", re.DOTALL)


def documented_files() -> dict[str, str]:
    return dict(FILE_BLOCK.findall(DOC.read_text(encoding="utf-8")))


def documented_commands() -> list[str]:
    blocks = CONSOLE_BLOCK.findall(DOC.read_text(encoding="utf-8"))
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


PIP = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]  # offline
PIP += ["--no-build-isolation"]


def documented_snippets() -> list[str]:
    """The page's Python examples other than the package's own file."""
    text = DOC.read_text(encoding="utf-8")
    return [code for marker, code in PYTHON_BLOCK.findall(text) if not marker]


def pip_install(package: Path, target: Path) -> None:
    """`pip install PACKAGE`, into `target` (offline: the package needs nothing new)."""
    done = subprocess.run(
        [*PIP, "--target", str(target), str(package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def vlmalign(args: list[str], cwd: Path, target: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def builtin_items() -> list[dict[str, object]]:
    path = resources.files("vlmalign.data") / "builtin" / "moral-vqa-40.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def accuracies(run: Path, judge: str) -> dict[tuple[str, int], tuple[float, int]]:
    cells = json.loads((run / "results.json").read_text())["cells"]
    return {
        (c["split"], c["shots"]): (round(c["accuracy"], 9), c["n"])
        for c in cells
        if c["judge"] == judge
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The documented package written out and installed: (its working folder, the target)."""
    work = tmp_path_factory.mktemp("plugin")
    for name, text in documented_files().items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text, encoding="utf-8")
    target = work / "site"
    pip_install(work / "vlmalign-parrot", target)
    return work, target


def test_the_page_shows_a_whole_package_and_its_commands() -> None:
    assert set(documented_files()) == {
        "vlmalign-parrot/pyproject.toml",
        "vlmalign-parrot/vlmalign_parrot.py",
        "items.csv",
        "parrot.yaml",
    }
    assert documented_commands()[0] == "pip install ./vlmalign-parrot"


def test_every_documented_command_runs(installed: tuple[Path, Path]) -> None:
    work, target = installed
    for command in documented_commands()[1:]:
        args = shlex.split(command)
        assert args[0] == "vlmalign", command
        done = vlmalign(args[1:], work, target)
        text = done.stdout + done.stderr
        if "study" in args and "--no-finetune" not in args and "parrot.yaml" not in args:
            # Finetuning a model that cannot train: one line, exit 2, nothing written.
            assert done.returncode == 2, text
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "lacks the 'train' capability" in lines[0], text
            assert "parrot:No." in lines[0] and "Traceback" not in text
            assert not (work / args[args.index("--out") + 1] / "study.sqlite").exists()
            continue
        assert done.returncode == 0, f"{command}\n{text}"
        if args[1:] == ["models"]:
            assert re.search(
                r"parrot:<the answer it always gives>\s.*vlmalign-parrot 0\.1\.0", text
            )
            assert re.search(r"\bmini\s.*vlmalign ", text)  # vlmalign's own, listed the same way
        if args[1:] == ["judges"]:
            assert re.search(r"first-word\s.*vlmalign-parrot 0\.1\.0", text)
            assert re.search(r"stance\s.*vlmalign ", text)
        if args[1:] == ["dataset", "sources"]:
            assert re.search(r"csv:<CSV file>\s.*vlmalign-parrot 0\.1\.0", text)


def test_the_documented_snippets_run(installed: tuple[Path, Path]) -> None:
    work, target = installed
    snippets = documented_snippets()
    assert snippets
    for code in snippets:
        env = {**os.environ, "PYTHONPATH": str(target)}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{code}\n{done.stderr}"


def test_a_study_with_the_plugins_model_and_judge_reads_what_it_said(
    installed: tuple[Path, Path],
) -> None:
    work, target = installed
    run = work / "runs" / "parrot-check"
    args = ["study", "--model", "parrot:No.", "--judge", "first-word", "--judge", "stance"]
    done = vlmalign([*args, "--samples", "1", "--no-finetune", "--out", str(run)], work, target)
    assert done.returncode == 0, done.stdout + done.stderr
    # Expected: per condition, the share of its items whose aligned stance is "no".
    conditions = [("train", 0), ("train", 1), ("train", 2), ("test", 0)]
    expected = {}
    for split, shots in conditions:
        items = [i for i in builtin_items() if i["split"] == split]
        stances = Counter(i["aligned_stance"] for i in items)
        expected[(split, shots)] = (round(stances["no"] / len(items), 9), len(items))
    assert accuracies(run, "first-word") == expected
    assert accuracies(run, "stance") == expected  # a built-in judge agrees
    provenance = json.loads((run / "results.json").read_text())["provenance"]
    assert "parrot:No." in json.dumps(provenance)


def test_the_csv_source_feeds_a_study(installed: tuple[Path, Path]) -> None:
    work, target = installed
    run = work / "runs" / "parrot-csv-check"
    done = vlmalign(["study", "parrot.yaml", "--out", str(run)], work, target)
    assert done.returncode == 0, done.stdout + done.stderr
    # items.csv: `cat` should be answered "no" (the parrot is right), `coffee` "yes".
    assert accuracies(run, "first-word") == {("test", 0): (0.5, 2)}
    bad = work / "bad.csv"
    bad.write_text("id,image,question\nx,pkg:skimage/data/chelsea.png,\n", encoding="utf-8")
    done = vlmalign(["dataset", "validate", f"csv:{bad}"], work, target)
    assert done.returncode == 2 and "row 0" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


BROKEN = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "vlmalign-broken"
version = "0.2.0"

[tool.setuptools]
py-modules = ["vlmalign_broken"]

[project.entry-points."vlmalign.judges"]
broken = "vlmalign_broken:spec"
stance = "vlmalign_broken:stance"
misnamed = "vlmalign_broken:stance"
notaspec = "vlmalign_broken:something"

[project.entry-points."vlmalign.models"]
gone = "vlmalign_missing:spec"
crashy = "vlmalign_broken:crashy"
""",
    "vlmalign_broken.py": """\
from vlmalign.judges.builtin import stance as _stance
from vlmalign.plugins import JudgeSpec, ModelSpec

stance = JudgeSpec("stance", "a second stance", "nothing", _stance.configured)
something = 42


def _crash(load):
    raise ValueError(f"cannot use {load.argument!r}")


crashy = ModelSpec("crashy", "raises", "none", "nothing", _crash, argument="anything")


def __getattr__(name):
    if name == "spec":
        import missing_dependency  # noqa: F401
    raise AttributeError(name)
""",
}


def test_broken_plugins_are_named_in_one_line_each_and_the_others_load(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    work, target = installed
    package = tmp_path / "vlmalign-broken"
    package.mkdir()
    for name, text in BROKEN.items():
        (package / name).write_text(text, encoding="utf-8")
    broken_target = tmp_path / "site"
    pip_install(package, broken_target)
    both = f"{target}{os.pathsep}{broken_target}"
    done = vlmalign(["judges"], work, Path(both))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "left out" in line]
    assert len(warnings) == 4, done.stderr
    reasons = {
        "'broken'": "No module named 'missing_dependency'",
        "'stance'": "the name is taken by vlmalign",
        "'misnamed'": "names a judge 'stance'",
        "'notaspec'": "is a int, not a JudgeSpec",
    }
    for name, why in reasons.items():
        (line,) = [w for w in warnings if f"judge plugin {name}" in w]
        assert why in line and "vlmalign-broken 0.2.0" in line
    assert re.search(r"first-word\s.*vlmalign-parrot", done.stdout)
    assert re.search(r"stance\s.*vlmalign 0", done.stdout)  # the built-in one kept its name
    done = vlmalign(["models"], work, Path(both))
    assert done.returncode == 0 and "model plugin 'gone'" in done.stderr
    assert "parrot" in done.stdout and "crashy" in done.stdout
    # A plugin's factory that raises: one line naming it, exit 2, no traceback.
    run = ["study", "--model", "crashy:x", "--judge", "stance", "--no-finetune"]
    done = vlmalign([*run, "--out", str(tmp_path / "run")], work, Path(both))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (
        "error: model 'crashy' (vlmalign-broken 0.2.0) failed: ValueError: cannot use 'x'"
    ), done.stderr
    assert "Traceback" not in done.stderr
