"""Responses, tokens and refusals per condition: summed from what an endpoint reported, shown in
report.md, report.html, results.json and on the console, and left out for in-process models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.report.conftest import build_run
from vlmalign.cli.console import out
from vlmalign.cli.studies import print_tables, print_usage
from vlmalign.report.build import build_report
from vlmalign.report.conditions import ConditionKey
from vlmalign.report.tables import USAGE_NOTE, USAGE_TITLE, usage_rows
from vlmalign.report.usage import condition_usage, usage_shown
from vlmalign.schemas.results import Results, UsageRecord
from vlmalign.store import GenerationRow

SERVED_BY = "gpt-4o-2024-08-06"


def generation(
    variant: str = "base",
    split: str = "train",
    shots: int = 0,
    sample: int = 0,
    **reported: object,
) -> GenerationRow:
    """A stored response of one condition, with what an endpoint reported about it."""
    row = GenerationRow(
        f"{variant}-{split}-{shots}-{sample}-{len(reported)}",
        variant,
        "m",
        "fp",
        None,
        "sha",
        "item",
        split,
        shots,
        sample,
        0,
        "img",
        "prompt",
        "{}",
        "Yes.",
    )
    return replace(row, **reported)  # type: ignore[arg-type]


def usage_record(
    condition: ConditionKey,
    responses: int,
    refused: int,
    length_stops: int,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    served_by: list[str],
    run: str = "",
) -> UsageRecord:
    return UsageRecord(
        model=condition.model,
        split=condition.split,
        shots=condition.shots,
        responses=responses,
        refused=refused,
        length_stops=length_stops,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        served_by=served_by,
        run=run,
    )


# --- the figures -------------------------------------------------------------------------------
def test_tokens_are_summed_per_condition_and_refusals_counted() -> None:
    rows = [
        # An n=2 request's usage is on its first response; its other sample carries 0.
        generation("finetuned", shots=0, prompt_tokens=9, completion_tokens=4, served_by="b"),
        generation("base", sample=0, prompt_tokens=10, completion_tokens=5, served_by="m-2"),
        generation("base", sample=1, prompt_tokens=0, completion_tokens=0, served_by="m-1"),
        generation("base", sample=2, prompt_tokens=7, completion_tokens=3, served_by="m-2"),
        generation("base", sample=3, refused=True, finish_reason="content_filter"),
        generation("base", sample=4, finish_reason="length"),
        generation("base", sample=5, finish_reason="stop"),
        generation("base", "test", 0),  # an in-process model's: nothing reported
    ]
    usage = condition_usage(rows, "r")
    assert [u.condition for u in usage] == [  # the report's order, whatever the rows'
        ConditionKey("base", "train", 0),
        ConditionKey("base", "test", 0),
        ConditionKey("finetuned", "train", 0),
    ]
    train, test, finetuned = usage
    assert train == usage_record(
        ConditionKey("base", "train", 0), 6, 1, 1, 17, 8, ["m-1", "m-2"], run="r"
    )
    assert test == usage_record(ConditionKey("base", "test", 0), 1, 0, 0, None, None, [], run="r")
    assert (finetuned.prompt_tokens, finetuned.completion_tokens) == (9, 4)
    assert usage_shown(usage)


@pytest.mark.parametrize(
    ("reported", "shown"),
    [
        ({}, False),  # in-process: nothing new to show
        ({"finish_reason": "stop", "served_by": "m"}, False),
        ({"prompt_tokens": 0, "completion_tokens": 0}, True),
        ({"refused": True}, True),
        ({"finish_reason": "length"}, True),
    ],
)
def test_the_table_is_shown_only_with_tokens_refusals_or_length_stops(
    reported: dict[str, object], shown: bool
) -> None:
    usage = condition_usage([generation(), generation(sample=1, **reported)], "r")
    assert usage_shown(usage) is shown
    assert bool(usage_rows(usage)) is shown


def test_rows_use_thousands_separators_and_a_dash_for_no_count() -> None:
    usage = [
        usage_record(ConditionKey("base", "train", 1), 1200, 3, 2, 1234567, 8901, ["a", "b"]),
        usage_record(ConditionKey("finetuned", "test", 0), 40, 0, 0, None, None, []),
    ]
    assert usage_rows(usage) == [
        ["base 1-shot train", "1,200", "3", "2", "1,234,567", "8,901", "a, b"],
        ["finetuned 0-shot test", "40", "0", "0", "–", "–", "–"],
    ]


def test_a_usage_record_reads_its_condition_back() -> None:
    record = usage_record(ConditionKey("base", "train", 1), 1, 0, 0, None, None, [])
    assert record.condition == ConditionKey("base", "train", 1)
    assert record.condition.label == "base 1-shot train"


# --- the report files --------------------------------------------------------------------------
def endpoint(row: GenerationRow) -> GenerationRow:
    """The base model 0-shot on train answered by an endpoint (60 responses of 30 items, two
    samples per request): 150 prompt and 60 completion tokens per request, on its first
    sample; one refusal, one stop at the token limit. Other conditions report nothing."""
    if (row.variant, row.split, row.shots) != ("base", "train", 0):
        return row
    first = row.sample_index == 0
    reported = replace(
        row,
        finish_reason="stop",
        prompt_tokens=150 if first else 0,
        completion_tokens=60 if first else 0,
        served_by=SERVED_BY,
        system_fingerprint="fp_1",
    )
    if row.item_id == "cat-kick" and not first:
        return replace(reported, response="", refused=True, finish_reason="content_filter")
    if row.item_id == "cat-toy" and first:
        return replace(reported, finish_reason="length")
    return reported


USAGE_ROW = f"| base 0-shot train | 60 | 1 | 1 | 4,500 | 1,800 | {SERVED_BY} |"


def test_a_run_with_a_refusal_shows_the_table_and_writes_the_records(tmp_path: Path) -> None:
    run_dir = tmp_path / "remote"
    build_run(run_dir, endpoint=endpoint)
    build_report([run_dir], run_dir)

    markdown = (run_dir / "report.md").read_text()
    assert f"## {USAGE_TITLE}" in markdown
    assert USAGE_ROW in markdown
    assert "| base 1-shot train | 60 | 0 | 0 | – | – | – |" in markdown
    assert USAGE_NOTE in markdown

    page = (run_dir / "report.html").read_text()
    assert 'id="usage"' in page and 'href="#usage"' in page
    assert "4,500" in page and "content filter declining to answer" in page

    document = json.loads((run_dir / "results.json").read_text())
    Results.model_validate(document)
    usage = {(u["model"], u["split"], u["shots"]): u for u in document["usage"]}
    assert len(usage) == 6
    assert usage[("base", "train", 0)] == {
        "model": "base",
        "split": "train",
        "shots": 0,
        "responses": 60,
        "refused": 1,
        "length_stops": 1,
        "prompt_tokens": 4500,
        "completion_tokens": 1800,
        "served_by": [SERVED_BY],
        "run": "remote",
    }
    assert usage[("finetuned", "test", 0)]["prompt_tokens"] is None
    assert usage[("finetuned", "test", 0)]["served_by"] == []


def test_an_in_process_run_shows_no_such_table(synthetic_run: Path) -> None:
    build_report([synthetic_run], synthetic_run)
    assert USAGE_TITLE not in (synthetic_run / "report.md").read_text()
    page = (synthetic_run / "report.html").read_text()
    assert USAGE_TITLE not in page and 'id="usage"' not in page
    document = json.loads((synthetic_run / "results.json").read_text())
    # results.json still says how many responses each condition has, with no counts.
    assert {u["responses"] for u in document["usage"]} == {60, 20}
    assert all(u["prompt_tokens"] is None and not u["refused"] for u in document["usage"])


def test_runs_side_by_side_each_show_their_own_usage(tmp_path: Path) -> None:
    remote, local = tmp_path / "remote", tmp_path / "local"
    build_run(remote, endpoint=endpoint)
    build_run(local, samples=1, seed=1)
    build_report([remote, local], tmp_path / "both")
    markdown = (tmp_path / "both" / "report.md").read_text()
    assert markdown.count(f"### {USAGE_TITLE}") == 1  # the in-process run has none
    assert USAGE_ROW in markdown
    document = json.loads((tmp_path / "both" / "results.json").read_text())
    assert {u["run"] for u in document["usage"]} == {"remote", "local"}


# --- the console -------------------------------------------------------------------------------
def test_the_console_prints_the_table_after_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: no cell is wrapped
    run_dir = tmp_path / "remote"
    build_run(run_dir, endpoint=endpoint)
    analysis = build_report([run_dir], run_dir)[0]
    with out.capture() as captured:
        print_tables(analysis.cells, analysis.run.provenance, analysis.usage)
    printed = captured.get()
    assert USAGE_TITLE in printed and "4,500" in printed and SERVED_BY in printed
    assert "content filter" in printed
    assert printed.index("Table 2") < printed.index(USAGE_TITLE)


def test_the_console_prints_nothing_for_an_in_process_run(synthetic_run: Path) -> None:
    analysis = build_report([synthetic_run], synthetic_run)[0]
    with out.capture() as captured:
        print_usage(analysis.usage)
    assert captured.get() == ""
