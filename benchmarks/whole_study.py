"""The whole default study as users run it: wall time, peak memory, image encodings.

The study runs in a fresh interpreter (`study_child.py`) into a temporary run directory, so
its peak resident memory is its own and nothing is reused from an earlier run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.processes import run_child
from benchmarks.results import Measured


def measure_study(quick: bool) -> Measured:
    with tempfile.TemporaryDirectory() as folder:
        arguments = ["-m", "benchmarks.study_child", str(Path(folder) / "run")]
        report, seconds = run_child([*arguments, "--quick"] if quick else arguments)
    per_image = (
        report["encoder_images_total"] / report["distinct_images"]
        if report["encoder_hooked"]
        else None
    )
    headline = {
        "study_peak_rss_mb": report["peak_rss_mb"],
        "study_wall_s": round(seconds, 2),
        "encoder_calls_per_image": per_image,
    }
    return Measured(headline, {**report, "process_wall_s": round(seconds, 2)})
