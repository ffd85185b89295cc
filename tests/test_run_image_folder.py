"""Where a run's images are: the dataset's folder is recorded absolute, so `report` and
`annotate` find the images from any working directory; a run that recorded a relative folder
(`.`, before this) still works from its own folder, and elsewhere says so in one warning line
instead of silently serving "image not available"."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import sys
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from PIL import Image

from vlmalign.data.dataset import Dataset, load_dataset
from vlmalign.data.images import clear_image_cache, load_image
from vlmalign.store import STORE_FILE, GenerationRow, RunStore, generation_key

from .annotate.conftest import make_run

ITEMS = 4


def write_dataset(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(folder / "pic.png")
    lines = [
        {
            "id": f"item-{i}",
            "image": "pic.png",
            "question": "Should I help her?",
            "ideal_answer": "Yes, help her.",
            "aligned_stance": "yes",
            "split": "train" if i < 2 else "test",
        }
        for i in range(ITEMS)
    ]
    (folder / "ds.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def cli(*args: str | Path) -> tuple[int, str, str]:
    """`vlmalign ARGS` through its entry point in this process: (exit code, stdout, stderr)."""
    from vlmalign.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = ["vlmalign", *map(str, args)]
    with (
        patch.object(sys, "argv", argv),
        patch.object(sys, "stdout", out),
        patch.object(sys, "stderr", err),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def image_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(home: the dataset's folder, where the study ran; elsewhere; the run directory), with a
    run of the dataset named by its relative path from home."""
    home, elsewhere, run = tmp_path / "home", tmp_path / "elsewhere", tmp_path / "run"
    write_dataset(home)
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    dataset = load_dataset("ds.jsonl")  # relative, as `--dataset ds.jsonl` names it
    assert not dataset.base_dir.is_absolute()
    _store_run(run, dataset, ["Yes, help her.", "No.", "Yes.", "I am not sure."])
    return home, elsewhere, run


def _store_run(run: Path, dataset: Dataset, responses: list[str]) -> None:
    """The dataset's snapshot and one response per item, as one finished study run (as a
    study stores them; no model needed)."""
    rows = []
    for index, (item, text) in enumerate(zip(dataset.items, responses, strict=True)):
        key = generation_key(
            model_fingerprint="fp",
            adapter_hash=None,
            image_sha256="img",
            prompt=item.question,
            sampling={},
            seed=index,
            sample_index=0,
        )
        split = item.split or "test"
        rows.append(
            GenerationRow(
                key,
                "base",
                "mini",
                "fp",
                None,
                dataset.sha256,
                item.id,
                split,
                0,
                0,
                index,
                "img",
                item.question,
                "{}",
                text,
            )
        )
    with RunStore(run) as store:
        store.snapshot_dataset(dataset)
        run_id = store.start_run({"model": "mini", "judges": {}})
        store.add_generations(rows)
        store.add_run_generations(run_id, [r.key for r in rows])
        store.finish_run(run_id)


def test_the_image_folder_is_recorded_absolute(
    places: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere, run = places
    conn = sqlite3.connect(run / STORE_FILE)
    [(recorded,)] = conn.execute("SELECT base_dir FROM datasets").fetchall()
    conn.close()
    assert recorded == str(home.resolve())
    monkeypatch.chdir(elsewhere)
    clear_image_cache()
    with RunStore(run, read_only=True) as store:
        found = store.item("item-0")
    assert found is not None
    item, folder = found
    assert load_image(item.image, folder).image.size == (8, 8)  # found from elsewhere


def test_report_elsewhere_finds_the_images(
    places: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, elsewhere, run = places
    monkeypatch.chdir(elsewhere)
    clear_image_cache()  # as a new process starts
    code, _, stderr = cli("report", run, "--out", elsewhere / "report", "--no-paper")
    assert code == 0, stderr
    assert image_warnings(stderr) == []
    assert "data:image/jpeg" in (elsewhere / "report" / "report.html").read_text()


def _as_an_old_run(run: Path) -> None:
    """What runs recorded before: the folder as the dataset's relative path gave it."""
    conn = sqlite3.connect(run / STORE_FILE)
    with conn:
        conn.execute("UPDATE datasets SET base_dir = '.'")
    conn.close()


def test_an_old_run_works_from_its_folder_and_warns_elsewhere(
    places: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere, run = places
    _as_an_old_run(run)

    monkeypatch.chdir(home)  # where the study ran: the images are found, nothing to say
    code, _, stderr = cli("report", run, "--out", home / "report", "--no-paper")
    assert code == 0, stderr
    assert image_warnings(stderr) == []
    assert "data:image/jpeg" in (home / "report" / "report.html").read_text()

    monkeypatch.chdir(elsewhere)
    code, _, stderr = cli("report", run, "--out", elsewhere / "report", "--no-paper")
    assert code == 0, stderr
    [warning] = image_warnings(stderr)
    assert warning.startswith(f"warning: {run}: the image files of {ITEMS} of {ITEMS} items ")
    assert "'pic.png'" in warning and str(elsewhere) in warning
    assert "run this command from the folder the study ran in" in warning


def test_annotate_says_so_as_it_starts(
    places: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere, run = places
    _as_an_old_run(run)
    served: list[object] = []
    monkeypatch.setattr("vlmalign.annotate.server.serve", lambda app, **_: served.append(app))
    monkeypatch.chdir(elsewhere)
    code, stdout, stderr = cli("annotate", run, "--port", "8123")
    assert code == 0, stderr
    assert len(served) == 1 and "responses to label" in stdout
    [warning] = image_warnings(stderr)
    assert f"the image files of {ITEMS} of {ITEMS} items are not found" in warning

    monkeypatch.chdir(home)
    code, _, stderr = cli("annotate", run, "--port", "8123")
    assert code == 0 and image_warnings(stderr) == [], stderr


def test_a_moved_dataset_is_named_by_its_recorded_folder(
    places: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere, run = places
    (home / "pic.png").rename(home / "moved.png")
    monkeypatch.chdir(elsewhere)
    code, _, stderr = cli("report", run, "--out", elsewhere / "report", "--no-paper")
    assert code == 0, stderr
    [warning] = image_warnings(stderr)
    assert f"in the run's image folder {home.resolve()} (e.g. 'pic.png')" in warning


def test_builtin_images_need_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_run(tmp_path / "run", ["Yes.", "No."])  # the built-in set: pkg: images
    monkeypatch.chdir(tmp_path)
    from vlmalign.cli.runs import warn_missing_images

    err = io.StringIO()
    with patch.object(sys, "stderr", err):
        warn_missing_images(tmp_path / "run")
    assert err.getvalue() == ""
    assert os.path.isdir(tmp_path / "run")
