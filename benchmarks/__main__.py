"""Measure vlmalign on `mini` and write benchmarks/results.json.

    python -m benchmarks [--only SECTION ...] [--quick] [--full] [--skip-cold]

Sections: generation (study path against a naive loop, same prompts), study (the whole default
study in a fresh process: wall time, peak memory, image encodings), startup (cold and warm),
finetune (examples/s at batch 8), judges (responses/s), api (requests/s against a local
OpenAI-compatible server with 100 ms latency at concurrency 32, as a share of the ideal).
Every figure comes from this one run on this machine; compare ratios across machines, not
rates. With --only, the other sections' figures are kept from the file.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from benchmarks.results import (
    SECTIONS,
    Measured,
    assemble,
    keep_previous,
    load_average_now,
    machine_facts,
    render_table,
    write_results,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
DEFAULT_PROMPTS = 16
QUICK_PROMPTS = 4


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, metavar="SECTION", help=f"only these: {SECTIONS}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller workload: {QUICK_PROMPTS} prompts, a 1-sample study with 1 epoch, "
        "fewer judged responses, one warm start",
    )
    parser.add_argument(
        "--full", action="store_true", help="generation on every prompt of the default study"
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=DEFAULT_PROMPTS,
        help="prompts for generation, stratified over conditions (× 5 samples each)",
    )
    parser.add_argument(
        "--skip-cold", action="store_true", help="no cold start (it dequantizes, ~30 s)"
    )
    parser.add_argument("--warm-runs", type=int, default=3, help="warm starts (median)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    return parser.parse_args(argv)


def generation_prompts(args: argparse.Namespace) -> int | None:
    """How many prompts generation measures (None: all of the default study's)."""
    if args.full:
        return None
    return QUICK_PROMPTS if args.quick else int(args.prompts)


def measure(section: str, args: argparse.Namespace, dataset: Any) -> Measured:
    """One section's figures. Imports are here: `--help` and the table need no torch."""
    from vlmalign.config import StudyConfig

    config = StudyConfig()
    if section == "generation":
        from benchmarks.generation import measure_generation
        from vlmalign.models.registry import load_model

        model = load_model(config.model, args.device, progress=False)
        return measure_generation(model, dataset, generation_prompts(args))
    if section == "study":
        from benchmarks.whole_study import measure_study

        return measure_study(args.quick)
    if section == "startup":
        from benchmarks.startup import measure_startup

        warm_runs = 1 if args.quick else int(args.warm_runs)
        return measure_startup(args.device, warm_runs, cold=not args.skip_cold)
    if section == "finetune":
        from benchmarks.finetuning import measure_finetune

        return measure_finetune(dataset, args.device)
    if section == "judges":
        from benchmarks.judging import measure_judges

        variants = 2 if args.quick else 8
        return measure_judges(dataset, config.judges, args.device, variants)
    if section == "api":
        from benchmarks.api import measure_api

        return measure_api(args.quick)
    raise ValueError(f"unknown section {section!r}")


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log = logging.getLogger("benchmarks")
    from vlmalign.config import StudyConfig
    from vlmalign.data.dataset import load_dataset
    from vlmalign.models.registry import resolve_device

    load_at_start = load_average_now()
    args.device = str(resolve_device(args.device))
    dataset = load_dataset(StudyConfig().dataset)
    sections = [s for s in SECTIONS if args.only is None or s in args.only]
    measured: dict[str, Measured] = {}
    for section in sections:
        log.warning("measuring %s ...", section)
        started = time.perf_counter()
        measured[section] = measure(section, args, dataset)
        log.warning("%s: %.0f s", section, time.perf_counter() - started)
    prompts = generation_prompts(args)
    workload: dict[str, Any] = {
        "model": "mini",
        "sections": sections,
        "quick": args.quick,
        "generation_prompts": "all" if prompts is None else prompts,
        "cold_start": not args.skip_cold,
    }
    machine = {**machine_facts(args.device), "load_average_start": load_at_start}
    results = assemble(machine, workload, measured)
    if args.only is not None:  # the other sections' figures stay in the file
        results = keep_previous(args.out, results)
    write_results(args.out, results)
    print(render_table(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
