"""Judge throughput: responses per second of each default judge, and of `choice`.

The responses are the dataset's reference answers and short variants of them, so no model is
needed. Loading a judge (building it and judging one response, which loads what it lazily
loads) is timed apart from judging. The built-in dataset is yes/no only, so `choice` judges
each item asked as two options (A: the ideal answer, B: the misaligned one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.results import Measured
from vlmalign.data.dataset import Dataset
from vlmalign.data.schema import Item
from vlmalign.judges.base import JudgeInput
from vlmalign.judges.registry import build_judge

BATCH = 64  # what the study's judge stage takes at a time


def first_sentence(text: str) -> str:
    end = next((i for i, char in enumerate(text) if char in ".!?"), len(text) - 1)
    return text[: end + 1]


def yesno_responses(item: Item) -> list[str]:
    ideal, misaligned = item.ideal_answer or "", item.misaligned_answer or ""
    return [
        ideal,
        misaligned,
        first_sentence(ideal),
        first_sentence(misaligned),
        "Yes.",
        "No.",
        "Yes, I think so.",
        "I am not sure.",
    ]


def choice_responses(item: Item) -> list[str]:
    ideal, misaligned = item.ideal_answer or "", item.misaligned_answer or ""
    return ["A", "B", "(A)", "Answer: B", f"A. {ideal}", "The answer is B", ideal, misaligned]


def yesno_inputs(dataset: Dataset, variants: int) -> list[JudgeInput]:
    return [
        JudgeInput.for_item(item, 0, response)
        for item in dataset.items
        for response in yesno_responses(item)[:variants]
    ]


def choice_inputs(dataset: Dataset, variants: int) -> list[JudgeInput]:
    inputs = []
    for item in dataset.items:
        options = (item.ideal_answer or "", item.misaligned_answer or "")
        for response in choice_responses(item)[:variants]:
            asked = JudgeInput.for_item(item, 0, response)
            inputs.append(
                asked.model_copy(
                    update={"choices": options, "correct_choice": 0, "aligned_stance": None}
                )
            )
    return inputs


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def judge_throughput(
    name: str, inputs: Sequence[JudgeInput], dataset: Dataset, device: str
) -> dict[str, Any]:
    built: list[Any] = []
    load_s = _timed(
        lambda: built.append(build_judge(name, device=device, image_base_dir=dataset.base_dir))
    )
    judge = built[0]
    load_s += _timed(lambda: judge.judge(inputs[:1]))
    seconds = _timed(
        lambda: [judge.judge(inputs[i : i + BATCH]) for i in range(0, len(inputs), BATCH)]
    )
    return {
        "responses": len(inputs),
        "seconds": round(seconds, 3),
        "load_s": round(load_s, 2),
        "responses_per_s": len(inputs) / seconds,
    }


def measure_judges(
    dataset: Dataset, judges: Sequence[str], device: str, variants: int = 8
) -> Measured:
    yesno = yesno_inputs(dataset, variants)
    raw = {name: judge_throughput(name, yesno, dataset, device) for name in judges}
    raw["choice"] = judge_throughput("choice", choice_inputs(dataset, variants), dataset, device)
    rates = {name: figures["responses_per_s"] for name, figures in raw.items()}
    raw["validity_interval_ms"] = validity_interval_ms(len(dataset))
    return Measured({"judge_responses_per_s": rates}, raw)


def validity_interval_ms(items: int, repeats: int = 5) -> dict[str, float]:
    """Milliseconds for one judge's validity on the references of `items` items (two answers
    each, clustered by item; 2,000 cluster resamples), with and without a graded score (the
    AUC interval): what `judges validate` and every report compute per judge. Best of
    `repeats`."""
    import random

    from vlmalign.stats import Known, balanced_accuracy_estimate

    draw = random.Random(0)
    known = [
        Known(f"item-{i}", expected, draw.random() < 0.8, draw.random())
        for i in range(items)
        for expected in (True, False)
    ]
    timings: dict[str, float] = {}
    for graded in (False, True):
        best = min(_seconds(balanced_accuracy_estimate, known, graded) for _ in range(repeats))
        timings["graded" if graded else "verdicts_only"] = round(best * 1000, 2)
    return timings


def _seconds(call: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start
