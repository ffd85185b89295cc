"""Finetuning throughput: one epoch of the default finetuning (batch 8) on the built-in train
split, on a freshly loaded `mini`, and the memory it takes on top of the loaded model."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

from benchmarks.results import Measured
from vlmalign.config import FinetuneConfig
from vlmalign.data.dataset import Dataset
from vlmalign.finetune import finetune
from vlmalign.models.registry import load_trainable

T = TypeVar("T")


class PeakRss:
    """The highest resident memory of this process while the block runs (sampled every 10 ms:
    ru_maxrss only ever grows, so it cannot show the peak of one stage)."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


def _with_gpu_peak(device: Any, work: Callable[[], T]) -> tuple[T, float | None]:
    """Run `work`; on CUDA also return the peak memory torch allocated meanwhile (MB)."""
    import torch

    if device.type != "cuda":
        return work(), None
    torch.cuda.reset_peak_memory_stats(device)
    result = work()
    return result, torch.cuda.max_memory_allocated(device) / 2**20


def measure_finetune(dataset: Dataset, device: str) -> Measured:
    config = FinetuneConfig(epochs=1)
    model = load_trainable("mini", device, progress=False)
    with tempfile.TemporaryDirectory() as folder, PeakRss() as memory:
        started = time.perf_counter()
        card, peak_gpu_mb = _with_gpu_peak(
            model.device,
            lambda: finetune(model, dataset, Path(folder), config, progress=False),
        )
        wall_s = time.perf_counter() - started
    epoch = card.epoch_losses[0]
    # The epoch's own seconds (the training loop), as the adapter card records them.
    epoch_s = epoch.seconds if epoch.seconds is not None else wall_s
    examples = card.examples if card.examples is not None else len(dataset.split(config.split))
    raw = {
        "examples": examples,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "steps": -(-examples // config.batch_size),
        "epoch_s": epoch_s,
        "wall_s": round(wall_s, 2),
        "peak_rss_delta_mb": round(memory.delta_mb, 1),
        "peak_gpu_mb": None if peak_gpu_mb is None else round(peak_gpu_mb, 1),
        "loss": epoch.loss,
    }
    return Measured({"finetune_examples_per_s": examples / epoch_s}, raw)
