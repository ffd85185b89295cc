"""`vlmalign study --model openai:<name>` and the `vlm:openai:<name>` judge against a real local
OpenAI-compatible server (benchmarks/openai_server.py) that answers each item's ideal answer,
checks every request against the `openai` package's types and injects faults.

Expected values come from the dataset itself: a model that gives every item's ideal answer is
right on every item (stance reads the built-in set's ideal answers correctly), a judge told
"Aligned" for ideal answers and "Misaligned" for misaligned ones separates them perfectly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from benchmarks.openai_server import ChatRequest, Faults, LocalEndpoint, Reply
from typer.testing import CliRunner

from vlmalign.cli import app
from vlmalign.data.dataset import load_dataset

KEY = "sk-study-key-5f3a9c1e-never-written"
DATASET = "builtin:moral-vqa-40"
ITEMS = load_dataset(DATASET).items
TRAIN = sum(item.split == "train" for item in ITEMS)
TEST = len(ITEMS) - TRAIN


def ideal_answers(request: ChatRequest, index: int) -> Reply:
    """Each item's ideal answer, found by its question (the last user turn)."""
    for item in ITEMS:
        if request.last_user_text.strip() == item.question:
            assert item.ideal_answer is not None
            return Reply(item.ideal_answer)
    raise AssertionError(f"no item asks {request.last_user_text!r}")


def judge_replies(request: ChatRequest, index: int) -> Reply:
    """A judge that knows the answers: "Aligned." for an ideal one, "Misaligned." otherwise,
    with log-probabilities that say the same."""
    for item in ITEMS:
        if f"Answer given: {item.ideal_answer}\n" in request.text:
            return Reply("Aligned. It is kind.", top_logprobs=[("Aligned", -0.05), ("Mis", -3)])
        if f"Answer given: {item.misaligned_answer}\n" in request.text:
            return Reply("Misaligned: it harms.", top_logprobs=[("Mis", -0.1), ("Aligned", -2.4)])
    return Reply("I cannot tell.")


def environment(endpoint: LocalEndpoint) -> dict[str, str]:
    return {"OPENAI_BASE_URL": endpoint.base_url, "OPENAI_API_KEY": KEY}


def stored(run: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{run / 'study.sqlite'}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


def files_holding(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def cells(run: Path) -> dict[tuple[str, str, int], float]:
    document = json.loads((run / "results.json").read_text())
    return {(c["judge"], c["split"], c["shots"]): c["accuracy"] for c in document["cells"]}


def study(run: Path, *options: str) -> list[str]:
    return [
        "study",
        "--dataset",
        DATASET,
        "--model",
        "openai:served-vlm",
        "--out",
        str(run),
        "--judge",
        "stance",
        "--no-finetune",
        *options,
    ]


def test_a_study_through_a_faulty_endpoint_gets_every_ideal_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(rate_limit_every=5, retry_after="0.02", server_error_every=7, drop_every=11)
    with LocalEndpoint(reply=ideal_answers, key=KEY, model="served-vlm", faults=faults) as endpoint:
        for name, value in environment(endpoint).items():
            monkeypatch.setenv(name, value)
        run = tmp_path / "run"
        result = CliRunner().invoke(app, study(run, "--samples", "2", "--max-concurrency", "8"))
        stats = endpoint.stats.snapshot()
    assert result.exit_code == 0, result.output
    assert stats["invalid"] == []
    assert {"rate_limit", "server_error", "drop"} <= set(stats["faults"])
    assert cells(run) == {
        ("stance", "train", 0): 1.0,
        ("stance", "train", 1): 1.0,
        ("stance", "train", 2): 1.0,
        ("stance", "test", 0): 1.0,
    }
    # one response per (item, condition, sample), each written once
    rows = stored(run, "SELECT item_id, split, shots, sample_index FROM generations")
    assert len(rows) == len(set(rows)) == (TRAIN * 3 + TEST) * 2
    served = stored(run, "SELECT DISTINCT served_by, system_fingerprint FROM generations")
    assert served == [("served-vlm-served", "fp_local")]
    assert stored(run, "SELECT SUM(prompt_tokens) > 0, SUM(refused) FROM generations") == [(1, 0)]
    assert files_holding(run, KEY) == [] and KEY not in result.output
    provenance = json.loads((run / "results.json").read_text())["provenance"]
    assert provenance["endpoint"]["base_url"] == endpoint.base_url
    assert provenance["endpoint"]["api_key_env"] == "OPENAI_API_KEY"


def test_a_killed_study_resumes_asking_only_for_what_is_missing(tmp_path: Path) -> None:
    concurrency = 4
    run = tmp_path / "run"
    command = [sys.executable, "-m", "vlmalign", *study(run, "--samples", "1", "--quiet")]
    command += ["--max-concurrency", str(concurrency)]
    with LocalEndpoint(
        reply=ideal_answers, key=KEY, model="served-vlm", latency_s=0.05
    ) as endpoint:
        env = {**os.environ, **environment(endpoint)}
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it midway through the generation
            if (run / "study.sqlite").exists():
                try:
                    if stored(run, "SELECT COUNT(*) FROM generations")[0][0] >= 30:
                        break
                except sqlite3.Error:
                    pass
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        before = stored(run, "SELECT COUNT(*) FROM generations")[0][0]
        assert 30 <= before < TRAIN * 3 + TEST
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        stats = endpoint.stats.snapshot()
    assert again.returncode == 0, again.stderr
    responses = stored(run, "SELECT COUNT(*) FROM generations")[0][0]
    assert responses == TRAIN * 3 + TEST
    # Every answer the server gave was stored, except those lost at the kill: at most a group
    # that had arrived but was not yet written, and the requests in flight behind it (the
    # writer overlaps the next group's requests), `concurrency` each.
    assert stats["answered"] <= responses + 2 * concurrency
    assert all(value == 1.0 for value in cells(run).values())


def failing_study(tmp_path: Path, key: str, **server: object) -> tuple[int, str, Path, dict]:
    """The study as a user runs it (its own process, so its one-line errors and exit code),
    against a server with `server`'s settings; returns (exit code, stderr + stdout, run, stats)."""
    with LocalEndpoint(reply=ideal_answers, key=KEY, model="served-vlm", **server) as endpoint:
        env = {**os.environ, **environment(endpoint), "OPENAI_API_KEY": key}
        run = tmp_path / "run"
        options = ["--samples", "1", "--max-retries", "1", "--max-concurrency", "2", "--quiet"]
        command = [sys.executable, "-m", "vlmalign", *study(run, *options)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr + done.stdout, run, endpoint.stats.snapshot()


def test_a_request_that_keeps_failing_stops_the_run_in_one_line_keeping_the_rest(
    tmp_path: Path,
) -> None:
    broken = next(item for item in ITEMS if item.split == "test")
    code, output, run, _ = failing_study(
        tmp_path, KEY, faults=Faults(fail_phrases=(broken.question,))
    )
    assert code == 2
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output  # one line says what failed
    assert f"item {broken.id!r} (test 0-shot): HTTP 500, after 1 retries" in errors[0]
    assert "Traceback" not in output
    kept = stored(run, "SELECT COUNT(*) FROM generations")[0][0]
    assert kept > 0  # what arrived is kept; a rerun asks only for the rest


def test_a_wrong_key_stops_at_once_and_is_never_shown(tmp_path: Path) -> None:
    wrong = "sk-wrong-4b1d-key"
    code, output, run, stats = failing_study(tmp_path, wrong)
    assert code == 2 and "refused the API key in $OPENAI_API_KEY (HTTP 401)" in output
    assert wrong not in output and KEY not in output
    assert stats["unauthorized"] <= 2  # the requests in flight, none retried
    assert files_holding(run, wrong) == []


def test_content_filter_refusals_are_stored_and_judged_as_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filtered = [item for item in ITEMS if "kick" in item.question.lower()]
    assert filtered
    with LocalEndpoint(
        reply=ideal_answers, key=KEY, model="served-vlm", filter_phrases=("kick", "Kick")
    ) as endpoint:
        for name, value in environment(endpoint).items():
            monkeypatch.setenv(name, value)
        run = tmp_path / "run"
        result = CliRunner().invoke(app, study(run, "--samples", "1", "--quiet"))
    assert result.exit_code == 0, result.output
    refused = stored(
        run,
        "SELECT g.item_id, j.aligned, j.answer FROM generations g JOIN judgments j "
        "ON j.generation_key = g.key WHERE g.refused = 1",
    )
    ids = {item.id for item in filtered}
    assert {row[0] for row in refused} == ids
    assert {(row[1], row[2]) for row in refused} == {(None, "refused")}


def validate(
    endpoint: LocalEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    for name, value in environment(endpoint).items():
        monkeypatch.setenv(name, value)
    output = tmp_path / "validity.json"
    result = CliRunner().invoke(
        app,
        [
            "judges",
            "validate",
            "--dataset",
            DATASET,
            "--judge",
            "vlm:openai:judge-vlm",
            "--output",
            str(output),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    return json.loads(output.read_text())["validity"][0]


def test_the_endpoint_judge_separates_answers_it_is_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(rate_limit_every=9, retry_after="0.01")
    with LocalEndpoint(reply=judge_replies, key=KEY, model="judge-vlm", faults=faults) as server:
        entry = validate(server, tmp_path, monkeypatch)
        assert server.stats.snapshot()["invalid"] == []
    assert entry["balanced_accuracy"] == 1.0
    assert entry["auc"] == 1.0  # graded from the first token's log-probabilities
    assert entry["unclear"] == 0


def replies_without_logprobs(reply: Callable[[ChatRequest, int], Reply]):
    def plain(request: ChatRequest, index: int) -> Reply:
        answer = reply(request, index)
        return Reply(answer.text)

    return plain


def test_without_log_probabilities_the_judge_still_reads_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalEndpoint(
        reply=replies_without_logprobs(judge_replies), key=KEY, model="judge-vlm"
    ) as server:
        entry = validate(server, tmp_path, monkeypatch)
    assert entry["balanced_accuracy"] == 1.0


def answers_and_verdicts(request: ChatRequest, index: int) -> Reply:
    """One endpoint as both the studied model and the judge."""
    if "Answer given:" in request.text:
        return judge_replies(request, index)
    return ideal_answers(request, index)


def test_the_endpoint_judges_a_study_and_its_verdicts_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalEndpoint(reply=answers_and_verdicts, key=KEY, model="served-vlm") as endpoint:
        for name, value in environment(endpoint).items():
            monkeypatch.setenv(name, value)
        run = tmp_path / "run"
        options = ["--samples", "1", "--judge", "vlm:openai:served-vlm", "--quiet"]
        first = CliRunner().invoke(app, study(run, *options))
        asked = endpoint.stats.snapshot()["answered"]
        again = CliRunner().invoke(app, study(run, *options))
        assert endpoint.stats.snapshot()["answered"] == asked  # nothing asked twice
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert set(cells(run).values()) == {1.0}
    judged = stored(
        run,
        "SELECT answer, explanation, score > 0.5 FROM judgments "
        "WHERE judge = 'vlm:openai:served-vlm'",
    )
    assert len(judged) == TRAIN * 3 + TEST
    assert set(judged) == {("aligned", "It is kind", 1)}


def test_the_same_answers_give_the_same_cells_as_a_scripted_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint answering each item's ideal answer and `mock:ideal` make the same report."""
    faults = Faults(rate_limit_every=6, retry_after="0.01", drop_every=9)
    with LocalEndpoint(reply=ideal_answers, key=KEY, model="served-vlm", faults=faults) as server:
        for name, value in environment(server).items():
            monkeypatch.setenv(name, value)
        remote = tmp_path / "remote"
        assert CliRunner().invoke(app, study(remote, "--samples", "1", "--quiet")).exit_code == 0
    scripted = tmp_path / "scripted"
    command = study(scripted, "--samples", "1", "--quiet")
    command[command.index("openai:served-vlm")] = "mock:ideal"
    assert CliRunner().invoke(app, command).exit_code == 0

    def figures(run: Path) -> list[tuple]:
        document = json.loads((run / "results.json").read_text())
        keys = ("judge", "model", "split", "shots", "accuracy", "n", "aligned", "unclear")
        keys += ("ci_low", "ci_high", "items")
        return sorted(tuple(c[k] for k in keys) for c in document["cells"])

    assert figures(remote) == figures(scripted)
