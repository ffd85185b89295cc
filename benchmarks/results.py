"""What a benchmark run records: machine facts, headline figures, raw figures; JSON and a table.

Pure helpers (no torch at import), so the table and the file format are tested without models.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SECTIONS = ("generation", "study", "startup", "finetune", "judges", "api")
HEADLINE_KEYS = (
    "generation_speedup",
    "encoder_calls_per_image",
    "warm_start_s",
    "cold_start_s",
    "study_peak_rss_mb",
    "study_wall_s",
    "finetune_examples_per_s",
    "judge_responses_per_s",
    "api_concurrency_efficiency",
)


@dataclass(frozen=True)
class Measured:
    """One section's figures: `headline` keys go to the top of results.json, `raw` under the
    section's name."""

    headline: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def machine_facts(device: str) -> dict[str, Any]:
    """The machine the figures belong to (ratios are comparable across machines, rates not)."""
    import torch
    import transformers

    import vlmalign

    facts: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "vlmalign": vlmalign.__version__,
        "device": device,
        # Other work on the machine slows every figure (ratios less than rates).
        "load_average": load_average_now(),
    }
    if device.startswith("cuda"):
        facts["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return facts


def load_average_now() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the system reports them."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def assemble(
    machine: Mapping[str, Any],
    workload: Mapping[str, Any],
    measured: Mapping[str, Measured],
) -> dict[str, Any]:
    """results.json's content: schema, machine, workload, the headline keys, then each
    section's raw figures under its name (in SECTIONS order)."""
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "machine": dict(machine),
        "workload": dict(workload),
    }
    for name in SECTIONS:
        if name in measured:
            results.update(measured[name].headline)
    for name in SECTIONS:
        if name in measured:
            results[name] = measured[name].raw
    return results


def keep_previous(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """`results` with the sections it did not measure (and their headline figures) taken from
    the file at `path`, when that file has the same schema; `workload.kept` names them with the
    date they were measured (figures of different runs are not ratios of one run)."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return results
    if not isinstance(previous, dict) or previous.get("schema_version") != SCHEMA_VERSION:
        return results
    kept = [name for name in SECTIONS if name not in results and name in previous]
    if not kept:
        return results
    merged = dict(results)
    for key in HEADLINE_KEYS:
        if key not in merged and key in previous:
            merged[key] = previous[key]
    for name in kept:
        merged[name] = previous[name]
    date = previous.get("machine", {}).get("date")
    dates = previous.get("workload", {}).get("kept", {})  # kept before: their own dates
    merged["workload"] = {
        **results["workload"],
        "kept": {name: dates.get(name, date) for name in kept},
    }
    return merged


def write_results(path: Path, results: Mapping[str, Any]) -> None:
    """Write the JSON through a temporary file, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    staging.replace(path)


# --- the table ------------------------------------------------------------------------------


def _number(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _seconds(value: float) -> str:
    if value >= 60:
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes} min {seconds:02d} s"
    return f"{value:.1f} s"


def _generation_rows(raw: Mapping[str, Any], speedup: float) -> list[tuple[str, str, str]]:
    optimized, naive = raw["study_path"], raw["naive"]
    workload = f"{raw['prompts']} prompts × {raw['samples']} samples, same prompts and seeds"
    rows = [
        ("generation speed-up (study path ÷ naive loop)", f"×{_number(speedup)}", workload),
    ]
    for label, path in (("study path", optimized), ("naive loop", naive)):
        rows.append(
            (
                f"generation, {label}",
                f"{_number(path['responses_per_s'])} responses/s, "
                f"{_number(path['new_tokens_per_s'], 1)} new tokens/s",
                f"{path['responses']} responses in {_seconds(path['seconds'])}",
            )
        )
    sampled = raw["sampled_identical"]
    greedy = raw["greedy_check"]
    rows.append(
        (
            "naive loop = study path (cross-check)",
            f"greedy {greedy['identical']}/{greedy['prompts']}, "
            f"sampled {sampled}/{optimized['responses']}",
            "identical responses (greedy: temperature 0; sampled: same seeds)",
        )
    )
    return rows


def _study_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    raw = results["study"]
    what = f"{raw['responses']} responses, finetuning, judges {', '.join(raw['judges'])}"
    return [
        ("default study: wall time", _seconds(results["study_wall_s"]), what),
        ("default study: peak RSS", f"{_number(results['study_peak_rss_mb'], 0)} MB", what),
        (
            "image encodings per distinct image (whole study)",
            _number(results["encoder_calls_per_image"]),
            f"{raw['encoder_images_total']} encoded ({raw['encoder_images_generation']} "
            f"generating, {raw['encoder_images_training']} training) for "
            f"{raw['distinct_images']} images, {raw['encoder_forward_calls']} encoder calls",
        ),
    ]


def _startup_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    raw = results["startup"]
    rows = [
        (
            "warm start (import + load mini)",
            _seconds(results["warm_start_s"]),
            f"fresh process until mini is loaded, warm cache; median of {len(raw['warm_runs_s'])}",
        )
    ]
    if "cold_start_s" in results:
        rows.append(
            (
                "cold start (empty cache)",
                _seconds(results["cold_start_s"]),
                "fresh process until mini is loaded, GGUF dequantized and cached",
            )
        )
    return rows


def _finetune_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    raw = results["finetune"]
    memory = (
        f"peak GPU memory {_number(raw['peak_gpu_mb'], 0)} MB"
        if raw.get("peak_gpu_mb") is not None
        else f"peak RSS +{_number(raw['peak_rss_delta_mb'], 0)} MB"
    )
    return [
        (
            "finetuning",
            f"{_number(results['finetune_examples_per_s'])} examples/s",
            f"batch {raw['batch_size']}, {raw['examples']} examples, 1 epoch; {memory}",
        )
    ]


def _judge_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    raw = results["judges"]
    return [
        (
            f"judge {name}",
            f"{_number(rate, 0)} responses/s",
            f"{raw[name]['responses']} responses; load {_seconds(raw[name]['load_s'])} apart",
        )
        for name, rate in results["judge_responses_per_s"].items()
    ]


def _api_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    raw = results["api"]
    return [
        (
            "endpoint concurrency efficiency (rate ÷ ideal C/L)",
            f"{_number(results['api_concurrency_efficiency'] * 100, 0)}%",
            f"{raw['requests']} requests at concurrency {raw['concurrency']}, "
            f"{raw['latency_s'] * 1000:.0f} ms latency: {_number(raw['requests_per_s'], 0)}/s "
            f"of an ideal {_number(raw['ideal_requests_per_s'], 0)}/s",
        )
    ]


def table_rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, what was measured) for every section present in `results`."""
    rows: list[tuple[str, str, str]] = []
    if "generation" in results:
        rows += _generation_rows(results["generation"], results["generation_speedup"])
    if "study" in results:
        rows += _study_rows(results)
    if "startup" in results:
        rows += _startup_rows(results)
    if "finetune" in results:
        rows += _finetune_rows(results)
    if "judges" in results:
        rows += _judge_rows(results)
    if "api" in results:
        rows += _api_rows(results)
    return rows


def render_table(results: Mapping[str, Any]) -> str:
    """A Markdown table of the run (what docs/performance.md shows), headed by the machine."""
    machine = results["machine"]
    lines = [
        f"{machine['date']}, {machine['platform']}, {machine['cpu_count']} CPUs, "
        f"{machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"device {machine['device']}{_load_text(machine)}",
        "",
        "| measure | value | workload |",
        "|---|---|---|",
    ]
    lines += ["| " + " | ".join(_cell(text) for text in row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def _load_text(machine: Mapping[str, Any]) -> str:
    start, end = machine.get("load_average_start"), machine.get("load_average")
    if not start or not end:
        return ""
    return f", load average {start[0]:.1f} at start, {end[0]:.1f} at end"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe inside a cell would split it
