"""How long `vlmalign report` takes on a full-size study (synthetic responses, real store).

    python benchmarks/report_speed.py [--samples 5] [--runs 2]

Builds run directories with every condition of the default study (40 items, `--samples` per
prompt, two judges, three annotators' labels on a third of the responses), then times each
stage of the report: reading the store, the statistics, Markdown and the HTML page.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.report.conftest import build_run

from vlmalign.report.analysis import analyse
from vlmalign.report.html import render_html
from vlmalign.report.markdown import render_markdown
from vlmalign.report.run_data import load_run

T = TypeVar("T")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / f"run{i}" for i in range(args.runs)]
        for seed, run_dir in enumerate(dirs):
            build_run(run_dir, samples=args.samples, seed=seed)
        timings: dict[str, float] = {}

        def timed(stage: str, work: Callable[[], T]) -> T:
            start = time.perf_counter()
            result = work()
            timings[stage] = time.perf_counter() - start
            return result

        runs = timed("read stores", lambda: [load_run(d) for d in dirs])
        analyses = timed("statistics", lambda: [analyse(r) for r in runs])
        timed("markdown", lambda: render_markdown(analyses))
        page = timed("html", lambda: render_html(analyses))
    responses = sum(len(r.generations) for r in runs)
    print(f"{args.runs} run(s), {responses} responses, report.html {len(page) / 1e6:.1f} MB")
    for stage, seconds in timings.items():
        print(f"  {stage:12s} {seconds:6.2f} s")
    print(f"  {'total':12s} {sum(timings.values()):6.2f} s")


if __name__ == "__main__":
    main()
