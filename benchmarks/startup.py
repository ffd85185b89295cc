"""Cold and warm start: a fresh process imports vlmalign and loads `mini`.

A start is timed from launching the interpreter until the model is loaded (the child prints
its report then); the process's exit (freeing torch and transformers, about half a second) is
recorded apart, as `exit_s`. Warm: the prepared-model cache is filled (one unmeasured run
makes sure of it), so loading reads safetensors. Cold: `VLMALIGN_CACHE` points at an empty
folder, so the GGUF weights are dequantized and cached again, and the weight files hashed.
"""

from __future__ import annotations

import statistics
import tempfile
from typing import Any

from benchmarks.processes import run_child_until_ready
from benchmarks.results import Measured

LOAD_MINI = """
import json, sys, time
started = time.perf_counter()
import vlmalign
from vlmalign.models.registry import load_model
imported = time.perf_counter()
load_model("mini", sys.argv[1], progress=False)
print(json.dumps({"import_s": imported - started, "load_s": time.perf_counter() - imported}))
"""


def start_once(device: str, cache: str | None = None) -> dict[str, Any]:
    """One fresh process: seconds from launch until mini is loaded, its own import and load
    seconds, and the seconds its exit took after that."""
    env = {"VLMALIGN_CACHE": cache} if cache is not None else None
    report, ready, wall = run_child_until_ready(["-c", LOAD_MINI, device], env)
    return {
        "wall_s": round(ready, 2),
        "exit_s": round(wall - ready, 2),
        **{k: round(v, 2) for k, v in report.items()},
    }


def measure_startup(device: str, warm_runs: int, cold: bool) -> Measured:
    start_once(device)  # fills the cache if it is empty; not measured
    warm = [start_once(device) for _ in range(warm_runs)]
    warm_s = statistics.median(run["wall_s"] for run in warm)
    headline: dict[str, Any] = {"warm_start_s": warm_s}
    raw: dict[str, Any] = {"warm_runs_s": [run["wall_s"] for run in warm], "warm_runs": warm}
    if cold:
        with tempfile.TemporaryDirectory() as empty_cache:
            cold_run = start_once(device, empty_cache)
        headline["cold_start_s"] = cold_run["wall_s"]
        raw["cold_run"] = cold_run
    return Measured(headline, raw)
