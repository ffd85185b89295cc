"""Run the default study in this process and print what it cost as one JSON line.

    python -m benchmarks.study_child RUN_DIR [--quick]

`whole_study.py` (the parent) starts this in a fresh interpreter, so the peak resident memory
is the study's own. A forward hook on the model's image encoder counts every image encoded, split by
stage: while finetuning runs (`vlmalign.finetune.finetune`, wrapped here) or not (generation).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vlmalign.config import FinetuneConfig, StudyConfig
from vlmalign.data.dataset import load_dataset
from vlmalign.data.images import load_image

T = TypeVar("T")


class EncoderCounter:
    """A forward hook: images through the encoder (rows of its input) and calls, by stage."""

    def __init__(self) -> None:
        self.calls = 0
        self.generation = 0
        self.training = 0
        self.finetuning = False  # set while the finetuning stage runs

    def __call__(self, module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        rows = int(inputs[0].shape[0])
        self.calls += 1
        if self.finetuning:
            self.training += rows
        else:
            self.generation += rows

    def during_finetuning(self, finetune: Callable[..., T]) -> Callable[..., T]:
        """`finetune`, with this counter told when it runs."""

        @functools.wraps(finetune)
        def counted(*given: Any, **named: Any) -> T:
            self.finetuning = True
            try:
                return finetune(*given, **named)
            finally:
                self.finetuning = False

        return counted


def quick_config(config: StudyConfig) -> StudyConfig:
    """A smaller study for development: one sample per prompt, one epoch of finetuning."""
    return config.model_copy(update={"samples": 1, "finetune": FinetuneConfig(epochs=1)})


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import vlmalign.finetune
    import vlmalign.study as study

    counter = EncoderCounter()
    # The study imports `finetune` from its module when the stage starts: wrap it there.
    vlmalign.finetune.finetune = counter.during_finetuning(vlmalign.finetune.finetune)
    load_model = study.load_model
    loaded: list[Any] = []

    def load_counted(*given: Any, **named: Any) -> Any:
        model: Any = load_model(*given, **named)
        model.image_prefix.enc.register_forward_hook(counter)
        loaded.append(model)
        return model

    study.load_model = load_counted
    config = StudyConfig(out=args.run_dir)
    if args.quick:
        config = quick_config(config)
    started = time.perf_counter()
    result = study.run_study(config, progress=False)
    seconds = time.perf_counter() - started
    dataset = load_dataset(config.dataset)
    distinct = {load_image(item.image, dataset.base_dir).sha256 for item in dataset.items}
    report = {
        "study_s": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "responses": result.generated + result.reused,
        "samples": config.samples,
        "finetune_epochs": config.finetune.epochs if config.finetune else 0,
        "judges": list(config.judge_names()),
        "encoder_hooked": bool(loaded),
        # The model's own count, where it keeps one (a cross-check of the hook's).
        "model_encoder_calls": getattr(loaded[0], "encoder_calls", None) if loaded else None,
        "encoder_forward_calls": counter.calls,
        "encoder_images_generation": counter.generation,
        "encoder_images_training": counter.training,
        "encoder_images_total": counter.generation + counter.training,
        "distinct_images": len(distinct),
        "items": len(dataset.items),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
