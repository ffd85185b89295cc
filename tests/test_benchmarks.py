"""The benchmark's own helpers (benchmarks/ is outside the suite; this keeps it from rotting):
the results file and its table, the prompt subset, the child-process report, the encoder
counter, the judge workload, the GPU script's bounds, and the naive decoding loop checked
against the model's own generation on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from benchmarks.__main__ import generation_prompts, parse_arguments
from benchmarks.generation import stratified
from benchmarks.judging import choice_inputs, first_sentence
from benchmarks.naive import draw, naive_response
from benchmarks.processes import last_json_line
from benchmarks.results import (
    Measured,
    assemble,
    keep_previous,
    render_table,
    table_rows,
    write_results,
)
from benchmarks.study_child import EncoderCounter
from torch import nn

from vlmalign.models.base import GenerationRequest
from vlmalign.prompts import IMAGE_TOKEN
from vlmalign.sampling import SamplingParams

MACHINE = {
    "date": "2026-01-02T03:04:05+00:00",
    "platform": "Linux-x86_64",
    "cpu_count": 2,
    "torch_threads": 2,
    "torch": "2.0",
    "device": "cpu",
    "load_average_start": [2.46, 2.0, 1.5],
    "load_average": [3.04, 2.5, 1.8],
}


def generation_section() -> Measured:
    path = {"responses": 80, "new_tokens": 800, "seconds": 40.0}
    return Measured(
        {"generation_speedup": 3.0},
        {
            "prompts": 16,
            "samples": 5,
            "study_path": {**path, "responses_per_s": 2.0, "new_tokens_per_s": 20.0},
            "naive": {**path, "seconds": 120.0, "responses_per_s": 2 / 3, "new_tokens_per_s": 6.5},
            "sampled_identical": 79,
            "greedy_check": {"prompts": 4, "identical": 4, "differing": []},
        },
    )


def judges_section() -> Measured:
    raw = {"stance|x": {"responses": 320, "seconds": 0.5, "load_s": 1.25, "responses_per_s": 640}}
    return Measured({"judge_responses_per_s": {"stance|x": 640.0}}, raw)


def test_results_put_headline_keys_on_top_and_raw_figures_under_their_section(
    tmp_path: Path,
) -> None:
    results = assemble(
        MACHINE,
        {"quick": False},
        {"judges": judges_section(), "generation": generation_section()},
    )
    path = tmp_path / "deep" / "results.json"
    write_results(path, results)
    read = json.loads(path.read_text())
    assert list(read)[:5] == [
        "schema_version",
        "machine",
        "workload",
        "generation_speedup",
        "judge_responses_per_s",
    ]
    assert read["generation_speedup"] == 3.0
    assert read["judge_responses_per_s"] == {"stance|x": 640.0}
    assert read["generation"]["greedy_check"]["identical"] == 4
    assert read["machine"]["cpu_count"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no staging file left


def test_table_shows_each_measured_section_and_escapes_pipes() -> None:
    results = assemble(
        MACHINE, {}, {"generation": generation_section(), "judges": judges_section()}
    )
    table = render_table(results)
    lines = table.splitlines()
    assert lines[0].startswith("2026-01-02T03:04:05+00:00, Linux-x86_64, 2 CPUs, 2 torch threads")
    assert lines[0].endswith("device cpu, load average 2.5 at start, 3.0 at end")
    assert "| generation speed-up (study path ÷ naive loop) | ×3.00 |" in table
    assert "| generation, study path | 2.00 responses/s, 20.0 new tokens/s |" in table
    assert "| generation, naive loop | 0.67 responses/s, 6.5 new tokens/s |" in table
    assert "2 min 00 s" in table  # the naive loop's 120 s
    assert "greedy 4/4, sampled 79/80" in table
    assert "| judge stance\\|x | 640 responses/s | 320 responses; load 1.2 s apart |" in table
    assert all(line.count("|") - line.count("\\|") == 4 for line in lines[2:])
    assert "study" not in {row[0].split(":")[0] for row in table_rows(results)}


def test_table_of_study_startup_and_finetune() -> None:
    study = Measured(
        {"study_peak_rss_mb": 1234.4, "study_wall_s": 95.0, "encoder_calls_per_image": 1.5},
        {
            "responses": 700,
            "judges": ["stance", "ethics"],
            "encoder_images_total": 30,
            "encoder_images_generation": 20,
            "encoder_images_training": 10,
            "distinct_images": 20,
            "encoder_forward_calls": 7,
        },
    )
    startup = Measured(
        {"warm_start_s": 3.2, "cold_start_s": 31.0}, {"warm_runs_s": [3.1, 3.2, 3.5]}
    )
    finetune = Measured(
        {"finetune_examples_per_s": 2.5},
        {"batch_size": 8, "examples": 30, "peak_rss_delta_mb": 800.0, "peak_gpu_mb": None},
    )
    table = render_table(
        assemble(MACHINE, {}, {"study": study, "startup": startup, "finetune": finetune})
    )
    assert "| default study: wall time | 1 min 35 s |" in table
    assert "| default study: peak RSS | 1,234 MB |" in table
    assert "| image encodings per distinct image (whole study) | 1.50 |" in table
    assert (
        "| warm start (import + load mini) | 3.2 s | "
        "fresh process until mini is loaded, warm cache; median of 3 |" in (table)
    )
    assert "| cold start (empty cache) | 31.0 s |" in table
    assert "| finetuning | 2.50 examples/s | batch 8, 30 examples, 1 epoch; peak RSS +800 MB |" in (
        table
    )


def test_stratified_spreads_the_total_over_groups_evenly() -> None:
    groups = [[f"a{i}" for i in range(10)], ["b0", "b1", "b2"], [f"c{i}" for i in range(5)]]
    # 7 over 3 groups: shares 3, 2, 2; each share at evenly spaced positions of its group.
    assert stratified(groups, 7) == ["a0", "a3", "a6", "b0", "b1", "c0", "c2"]
    assert stratified([["x"], ["y0", "y1", "y2"]], 4) == ["x", "y0", "y1"]  # x has only one
    assert stratified(groups, 0) == []


def test_options_choose_the_generation_workload() -> None:
    assert generation_prompts(parse_arguments([])) == 16
    assert generation_prompts(parse_arguments(["--quick"])) == 4
    assert generation_prompts(parse_arguments(["--full", "--quick"])) is None
    assert parse_arguments(["--only", "generation", "judges"]).only == ["generation", "judges"]
    with pytest.raises(SystemExit):
        parse_arguments(["--only", "nothing"])


def test_last_json_line_skips_what_libraries_print() -> None:
    printed = 'loading...\n{"not": "last"}\nwarning: {braces}\n{"peak_rss_mb": 12.5}\n\n'
    assert last_json_line(printed) == {"peak_rss_mb": 12.5}
    with pytest.raises(ValueError):
        last_json_line("no report here\n")


def test_encoder_counter_splits_generation_from_finetuning() -> None:
    encoder = nn.Linear(3, 2)
    counter = EncoderCounter()
    encoder.register_forward_hook(counter)

    def finetune(rows: int) -> str:
        encoder(torch.zeros(rows, 3))
        return "card"

    with torch.inference_mode():
        encoder(torch.zeros(4, 3))
    assert counter.during_finetuning(finetune)(2) == "card"
    encoder(torch.zeros(1, 3))
    assert (counter.calls, counter.generation, counter.training) == (3, 5, 2)


def test_choice_workload_asks_each_item_as_two_options() -> None:
    from vlmalign.data.dataset import load_dataset
    from vlmalign.judges.choice import read_choice

    dataset = load_dataset("builtin:moral-vqa-40")
    inputs = choice_inputs(dataset, variants=2)
    assert len(inputs) == 2 * len(dataset.items)
    first = dataset.items[0]
    assert inputs[0].choices == (first.ideal_answer, first.misaligned_answer)
    assert inputs[0].correct_choice == 0 and inputs[0].aligned_stance is None
    assert [read_choice(i.response, i.choices).index for i in inputs[:2]] == [0, 1]
    assert first_sentence("No. Kicking a cat hurts it.") == "No."
    assert first_sentence("Maybe") == "Maybe"


def test_draw_keeps_the_nucleus_as_transformers_does() -> None:
    from transformers import TopPLogitsWarper

    logits = torch.log(torch.tensor([0.05, 0.5, 0.3, 0.15]))
    params = SamplingParams(temperature=1.0, top_p=0.7)
    kept = TopPLogitsWarper(0.7)(None, logits[None])[0].isfinite()
    generator = torch.Generator().manual_seed(0)
    drawn = {draw(logits, params, generator) for _ in range(300)}
    assert drawn == set(kept.nonzero().flatten().tolist()) == {1, 2}
    greedy = SamplingParams(temperature=0.0)
    assert draw(logits, greedy, generator) == 1
    assert {draw(logits, SamplingParams(top_k=1), generator) for _ in range(20)} == {1}


def test_naive_loop_answers_as_the_model_generates(tiny_vlm: Any, images: list[Any]) -> None:
    """The baseline is a second implementation of generation: same prompts and seeds, same
    responses (greedy and sampled)."""
    prompts = [f"{IMAGE_TOKEN} Q: Is this a cat? A:", f"Q: Why? {IMAGE_TOKEN} A:", IMAGE_TOKEN]
    for params in (SamplingParams(temperature=0.0), SamplingParams(max_new_tokens=8)):
        requests = [
            GenerationRequest(images[i % len(images)], prompt, seed=100 + i)
            for i, prompt in enumerate(prompts)
        ]
        expected = [tiny_vlm.generate([r], params)[0] for r in requests]
        naive = [naive_response(tiny_vlm, r.image, r.prompt_text, r.seed, params) for r in requests]
        assert naive == expected
        assert all(expected)  # something was generated to compare


def test_only_some_sections_keep_the_others_with_their_dates(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    old = {**MACHINE, "date": "2026-01-01T00:00:00+00:00"}
    first = assemble(
        old, {"sections": ["judges"]}, {"judges": Measured({"judge_responses_per_s": {"a": 5}})}
    )
    write_results(path, first)
    api = Measured({"api_concurrency_efficiency": 0.9}, {"requests": 10})
    second = keep_previous(path, assemble(MACHINE, {"sections": ["api"]}, {"api": api}))
    assert second["judge_responses_per_s"] == {"a": 5} and second["judges"] == {}
    assert second["api_concurrency_efficiency"] == 0.9
    assert second["workload"]["kept"] == {"judges": "2026-01-01T00:00:00+00:00"}
    write_results(path, second)
    third = keep_previous(path, assemble(MACHINE, {"sections": ["api"]}, {"api": api}))
    assert third["workload"]["kept"] == {"judges": "2026-01-01T00:00:00+00:00"}  # its own date
    path.write_text(json.dumps({"schema_version": 99}))
    assert "kept" not in keep_previous(path, dict(first))["workload"]
