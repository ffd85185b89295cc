"""End to end on a scripted study: calibrated estimates in results.json, `labels plan`, and the
paper's numbers left out beside a dataset that is not the paper's."""

from __future__ import annotations

import csv
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vlmalign.data.dataset import resolve_source


def vlmalign(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vlmalign", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A study of a dataset of our own (the built-in items renamed and reworded), a scripted
    model answering 60% of the items with their ideal answer, and people's labels (the truth)
    imported for a random third of the responses. Returns the run and the true aligned rate."""
    folder = tmp_path_factory.mktemp("calibrated")
    rng = random.Random(4)
    items = [json.loads(line) for line in resolve_source("builtin:moral-vqa-40").open()]
    truth: dict[str, bool] = {}
    with (folder / "items.jsonl").open("w") as dataset, (folder / "answers.jsonl").open("w") as a:
        for item in items:
            item["id"] = "own-" + item["id"]
            item["split"] = "train"
            dataset.write(json.dumps(item) + "\n")
            truth[item["id"]] = rng.random() < 0.6
            answer = item["ideal_answer"] if truth[item["id"]] else item["misaligned_answer"]
            a.write(json.dumps({"item": item["id"], "response": answer}) + "\n")
    vlmalign(
        "study", "--dataset", "items.jsonl", "--model", "mock:answers.jsonl", "--samples", "3",
        "--no-finetune", "--judge", "stance", "--out", "run", cwd=folder,
    )  # fmt: skip
    with sqlite3.connect(folder / "run" / "study.sqlite") as store:
        keys = store.execute("SELECT key, item_id FROM generations").fetchall()
    with (folder / "labels.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["generation_key", "annotator", "label"])
        for key, item_id in rng.sample(keys, len(keys) // 3):
            writer.writerow([key, "ana", "aligned" if truth[item_id] else "misaligned"])
    vlmalign("labels", "import", "run", "labels.csv", cwd=folder)
    vlmalign("report", "run", cwd=folder)
    rate = sum(truth.values()) / len(truth)
    return folder / "run", rate


def test_calibrated_estimates_cover_the_true_rate(labelled_run: tuple[Path, float]) -> None:
    run, truth = labelled_run
    results = json.loads((run / "results.json").read_text())
    judged = [c for c in results["cells"] if c["judge"] == "stance"]
    assert judged
    for cell in judged:
        calibrated = cell["calibrated"]
        assert set(calibrated) >= {
            "estimate", "ci_low", "ci_high", "n_labelled", "n_unlabelled", "lam", "method"
        }  # fmt: skip
        assert calibrated["n_labelled"] > 10
        # Every response of an item is the same scripted answer: the condition's true rate is
        # the share of items answered ideally.
        assert calibrated["ci_low"] <= truth <= calibrated["ci_high"]
        # The stance judge agrees with people: narrower than the labels alone.
        width = calibrated["ci_high"] - calibrated["ci_low"]
        assert width < calibrated["labels_only_ci_high"] - calibrated["labels_only_ci_low"]
    humans = [c for c in results["cells"] if c["judge"] == "human"]
    assert all(c["calibrated"] is None for c in humans)
    report = (run / "report.md").read_text()
    assert "people: " in report and "PPI++" in report


def test_the_papers_numbers_stay_away_from_other_datasets(labelled_run: tuple[Path, float]) -> None:
    run, _ = labelled_run
    assert "paper (MAGMA)" not in (run / "report.md").read_text()
    assert "paper (MAGMA)" not in (run / "report.html").read_text()
    results = json.loads((run / "results.json").read_text())
    assert all(c["paper_magma_accuracy"] is None for c in results["cells"])


def test_a_narrower_interval_needs_more_labels(labelled_run: tuple[Path, float]) -> None:
    run, _ = labelled_run
    plans = {
        width: json.loads(vlmalign("labels", "plan", run, "--width", width, "--json", cwd=run))
        for width in ("0.10", "0.05")
    }
    wide, narrow = plans["0.10"]["plan"], plans["0.05"]["plan"]
    assert [r["condition"] for r in wide] == [r["condition"] for r in narrow]
    assert {r["condition"] for r in wide} == {
        "base 0-shot train", "base 1-shot train", "base 2-shot train"
    }  # fmt: skip
    for w, n in zip(wide, narrow, strict=True):
        assert set(w) >= {"condition", "judge", "labelled", "needed", "more", "half_width_now"}
        assert n["needed"] > w["needed"] and w["labelled"] == n["labelled"] > 0
        assert w["more"] == max(0, min(w["needed"], w["responses"]) - w["labelled"])
        assert w["reachable"] == (w["needed"] <= w["responses"])
