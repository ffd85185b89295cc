"""File and folder names that are not UTF-8 (a name made of bytes from another encoding, `\\xff`).

Python hands such names from argv and the file system over as surrogate escapes (`\\udcff`),
which a UTF-8 terminal, SQLite and UTF-8 files cannot take. Through the real command in a fresh
process, with strict UTF-8 output (printing a surrogate there raises), each command either
works (exit 0) or refuses in one line (exit 2) that shows the name's bytes as `\\xff`; never a
traceback, and a refusal leaves no unfinished run behind. The names are made from bytes here.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHOWN = "\\xff"  # how the byte 0xff of a name is shown


def env(home: Path) -> dict[str, str]:
    """Standard streams as on a desktop's UTF-8 locale (en_US.UTF-8): UTF-8 and strict, so
    printing a surrogate raises. (Python gives the C and C.UTF-8 locales `surrogateescape`
    instead, which would hide the problem.)"""
    return {
        **os.environ,
        "PYTHONIOENCODING": "utf-8:strict",
        "PYTHONUTF8": "0",
        "VLMALIGN_CACHE": str(home / "cache"),
        "COLUMNS": "250",
    }


def vlmalign(home: Path, *args: str | bytes) -> subprocess.CompletedProcess[str]:
    """`vlmalign ARGS` in its own process, run in `home`; bytes arguments are passed as bytes."""
    raw = [a if isinstance(a, bytes) else os.fsencode(a) for a in args]
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"vlmalign", *raw],
        capture_output=True,
        timeout=300,
        check=False,
        cwd=home,
        env=env(home),
    )
    return subprocess.CompletedProcess(
        args, done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    )


def one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error", " "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def item(index: int) -> dict[str, object]:
    return {
        "id": f"item-{index}",
        "image": "pic.png",
        "question": "Should I help her cross the road?",
        "ideal_answer": "Yes, help her.",
        "aligned_stance": "yes",
        "shots": [
            {"question": "What is in the picture?", "answer": "An old lady."},
            {"question": "Where is she?", "answer": "At a crossing."},
        ],
        "split": "train" if index < 2 else "test",
    }


STUDY = ("--model", "mock:ideal", "--no-finetune", "--judge", "stance", "--samples", "1")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a dataset (`ds.jsonl`, and the same bytes as `ds-\\xff.jsonl`) and a run
    of it (`run`), made by the real `study` command."""
    home = tmp_path_factory.mktemp("names")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(home / "pic.png")
    lines = "".join(json.dumps(item(i)) + "\n" for i in range(4))
    (home / "ds.jsonl").write_text(lines)
    (home / os.fsdecode(b"ds-\xff.jsonl")).write_text(lines)
    made = vlmalign(home, "study", "--dataset", "ds.jsonl", *STUDY, "--out", "run", "--quiet")
    assert made.returncode == 0, made.stderr
    strict = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.stdout.errors)"],
        capture_output=True,
        text=True,
        env=env(home),
        check=True,
    )
    assert strict.stdout.strip() == "strict"  # printing a surrogate would raise
    return home


def study_runs(run: Path) -> list[tuple[int, bool]]:
    conn = sqlite3.connect(f"file:{run / 'study.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, finished_at IS NOT NULL FROM study_runs ORDER BY id")
        return [(int(i), bool(done)) for i, done in rows]
    finally:
        conn.close()


def test_a_dataset_named_so_is_refused_and_starts_no_run(home: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(home / "run", run)
    before = study_runs(run)
    dataset = home / os.fsdecode(b"ds-\xff.jsonl")
    result = vlmalign(home, "study", "--dataset", os.fsencode(dataset), *STUDY, "--out", str(run))
    one_error_line(result, f"ds-{SHOWN}.jsonl", "not UTF-8")
    assert study_runs(run) == before == [(1, True)]  # no unfinished run left behind
    assert vlmalign(home, "store", "check", str(run)).returncode == 0


def test_a_dataset_named_so_starts_nothing_in_a_new_run_directory(
    home: Path, tmp_path: Path
) -> None:
    result = vlmalign(
        home, "study", "--dataset", b"ds-\xff.jsonl", *STUDY, "--out", str(tmp_path / "new")
    )
    one_error_line(result, f"ds-{SHOWN}.jsonl")
    assert not (tmp_path / "new").exists()


def test_a_run_directory_named_so(home: Path, tmp_path: Path) -> None:
    named = os.fsencode(tmp_path) + b"/run-\xff"
    shutil.copytree(home / "run", os.fsdecode(named))
    files = {p.name: p.read_bytes() for p in Path(os.fsdecode(named)).iterdir() if p.is_file()}
    report = vlmalign(home, "report", named)
    one_error_line(report, f"run-{SHOWN}")
    assert files == {  # nothing rewritten
        p.name: p.read_bytes() for p in Path(os.fsdecode(named)).iterdir() if p.is_file()
    }
    # The store itself is read and written as any other.
    checked = vlmalign(home, "store", "check", named)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{tmp_path}/run-{SHOWN}/study.sqlite: ok (")
    exported = vlmalign(home, "labels", "export", named, "--output", b"labels-\xff.csv")
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.strip() == f"wrote 0 labels to labels-{SHOWN}.csv"
    assert (home / os.fsdecode(b"labels-\xff.csv")).is_file()
    responses = vlmalign(home, "responses", "export", named)
    one_error_line(responses, f"run-{SHOWN}", "not UTF-8")
    missing = vlmalign(home, "report", os.fsencode(tmp_path) + b"/none-\xff")
    one_error_line(missing, f"none-{SHOWN}")


def test_an_out_folder_named_so(home: Path, tmp_path: Path) -> None:
    out = os.fsencode(tmp_path) + b"/out-\xff"
    study = vlmalign(home, "study", "--dataset", "ds.jsonl", *STUDY, "--out", out)
    one_error_line(study, f"out-{SHOWN}", "not UTF-8")
    assert not os.path.exists(out)  # refused before anything was made
    # A report written to such a folder names the run by its own folder: it works.
    report = vlmalign(home, "report", "run", "--out", out, "--no-paper")
    assert report.returncode == 0, report.stderr
    assert f"wrote {tmp_path}/out-{SHOWN}/report.md" in report.stdout
    assert os.path.isfile(out + b"/report.md")


def test_a_label_file_named_so(home: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(home / "run", run)
    conn = sqlite3.connect(run / "study.sqlite")
    key = conn.execute("SELECT key FROM generations ORDER BY key LIMIT 1").fetchone()[0]
    conn.close()
    labels = os.fsencode(tmp_path) + b"/lab-\xff.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [["generation_key", "annotator", "label"], [key, "ana", "aligned"]]
        )
    imported = vlmalign(home, "labels", "import", str(run), labels)
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 labels" in imported.stdout
    conn = sqlite3.connect(run / "study.sqlite")
    sources = [row[0] for row in conn.execute("SELECT source FROM labels")]
    conn.close()
    assert sources == [f"import:lab-{SHOWN}.csv"]  # the name's bytes, as text
    missing = vlmalign(home, "labels", "import", str(run), os.fsencode(tmp_path) + b"/no-\xff.csv")
    one_error_line(missing, f"no-{SHOWN}.csv", "cannot read")
