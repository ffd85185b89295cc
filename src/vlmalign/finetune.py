"""Finetune a model's adapters (MAGMA: bottleneck adapters + image prefix; `hf:`: LoRA) on
(image, 0-shot prompt, ideal answer).

The loop runs on accelerate, so the same code trains on this CPU, on one GPU with mixed
precision, or on many processes (`accelerate launch ... -m vlmalign finetune ...`).
Each epoch ends with a checkpoint; an interrupted run resumes from the last one and ends with
the same weights as an uninterrupted run (data order and dropout are seeded per epoch).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import vlmalign
from vlmalign.config import FinetuneConfig
from vlmalign.data.dataset import Dataset
from vlmalign.data.images import load_image
from vlmalign.data.schema import Split
from vlmalign.errors import ConfigError
from vlmalign.hashing import identity_fields, stable_hash
from vlmalign.models.adapters import read_card, save_adapter, state_hash
from vlmalign.models.base import PromptedModel, Trainable
from vlmalign.prompts import PromptFormat, ShotsAs, build_prompt
from vlmalign.schemas.adapter_card import AdapterCard, HyperparametersRecord

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"

#: The finetuning options a run's identity has always held, whatever their value. An option
#: added later counts only when set to another value than its default (`identity_fields`), so
#: adding one keeps every finished adapter and checkpoint reusable; it must keep that default.
FINETUNE_IDENTITY = frozenset(
    {
        "epochs",
        "batch_size",
        "lr",
        "encoder_lr",
        "prefix_lr",
        "warmup_ratio",
        "schedule",
        "decay_ratio",
        "weight_decay",
        "betas",
        "grad_clip",
        "grad_accum",
        "loss_on",
        "split",
        "seed",
        "mixed_precision",
    }
)
#: How LoRA shapes the weights: part of the identity of models finetuned through LoRA (they
#: report `adapter_settings`); a model without LoRA (MAGMA) ignores these, so they never count.
LORA_IDENTITY = frozenset({"lora_r", "lora_alpha", "lora_dropout"})


class RunIdentity(BaseModel):
    """What a checkpoint must match to be resumed or reused (hashed by `run_identity`)."""

    model_config = ConfigDict(frozen=True)

    base: str  # the base model's fingerprint
    dataset: str  # its sha256
    config: dict[str, Any]  # the finetuning options that count (FINETUNE_IDENTITY, LoRA's)
    prompt_format: str
    shots_as: ShotsAs | None = None  # came later: counts once set


#: What the identity has always held; `shots_as` counts only when set.
RUN_IDENTITY = frozenset({"base", "dataset", "config", "prompt_format"})


@dataclass(frozen=True)
class Example:
    item_id: str
    image_ref: str
    prompt_text: str
    answer: str


def build_examples(
    dataset: Dataset,
    model: PromptedModel,
    split: Split,
    prompt_format: PromptFormat,
    shots_as: ShotsAs | None = None,
) -> list[Example]:
    """0-shot prompt + ideal answer for each item of the split."""
    items = dataset.split(split)
    if not items:
        raise ConfigError(f"{dataset.source}: no {split} items to finetune on")
    return [
        Example(
            item.id,
            item.image,
            model.render_prompt(build_prompt(item, 0), prompt_format, shots_as),
            model.render_answer(item.ideal_answer, prompt_format),
        )
        for item in items
    ]


def _epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(f"{seed}/{epoch}").shuffle(order)
    return order


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def run_identity(
    model: Trainable,
    dataset: Dataset,
    config: FinetuneConfig,
    fmt: str,
    shots_as: ShotsAs | None = None,
) -> str:
    """What a checkpoint must match to be resumed or reused: the declared identity of the run
    (`RunIdentity`, with the config's `FINETUNE_IDENTITY`, and LoRA's for a model that has it)."""
    lora = bool(model.adapter_settings())
    options = identity_fields(
        config,
        FINETUNE_IDENTITY | LORA_IDENTITY if lora else FINETUNE_IDENTITY,
        ignored=() if lora else LORA_IDENTITY,
    )
    identity = RunIdentity(
        base=model.fingerprint(),
        dataset=dataset.sha256,
        config=options,
        prompt_format=fmt,
        shots_as=shots_as,
    )
    return stable_hash(identity_fields(identity, RUN_IDENTITY))


def _latest_checkpoint(directory: Path, identity: str) -> tuple[int, Path] | None:
    best: tuple[int, Path] | None = None
    for path in directory.glob("epoch-*"):
        state_file = path / "state.pt"
        if not state_file.is_file():
            continue
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state.get("identity") == identity and (best is None or state["epoch"] > best[0]):
            best = (int(state["epoch"]), path)
    return best


EpochCallback = Callable[[int, float], None]


def finetune(
    model: Trainable,
    dataset: Dataset,
    run_dir: Path,
    config: FinetuneConfig,
    *,
    prompt_format: PromptFormat | None = None,
    shots_as: ShotsAs | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> AdapterCard:
    """Train, checkpoint every epoch, write RUN_DIR/adapter/, and return its card.

    A finished adapter with the same identity is reused; a partial run resumes.
    """
    from accelerate import Accelerator

    fmt: PromptFormat = prompt_format or model.default_prompt_format
    identity = run_identity(model, dataset, config, fmt, shots_as)
    adapter_dir = run_dir / ADAPTER_DIR
    card = read_card(adapter_dir)
    if card is not None and card.run_identity == identity:
        log.info("finetuned adapter already in %s", adapter_dir)
        return card
    if config.encoder_lr is not None and not model.encoder_trainable:
        raise ConfigError(f"model {model.name!r} has no trainable image encoder; drop --encoder-lr")

    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config.mixed_precision),
        cpu=model.device.type == "cpu",
    )
    processes = accelerator.num_processes
    if config.batch_size % (processes * config.grad_accum):
        raise ConfigError(
            f"batch size {config.batch_size} must divide by processes × grad accum "
            f"({processes} × {config.grad_accum})"
        )
    micro_batch = config.batch_size // (processes * config.grad_accum)
    examples = build_examples(dataset, model, config.split, fmt, shots_as)
    images = {e.image_ref: load_image(e.image_ref, dataset.base_dir).image for e in examples}

    model.configure_adapter(config.adapter_settings())
    include_encoder = config.encoder_lr is not None
    model.set_trainable(include_encoder=include_encoder)
    rates = {"adapters": config.lr, "prefix": config.prefix_lr or config.lr}
    if config.encoder_lr is not None:
        rates["encoder"] = config.encoder_lr
    groups = [
        {"params": params, "lr": rates[name]}
        for name, params in model.trainable_groups(include_encoder).items()
        if params
    ]
    optimizer = torch.optim.AdamW(groups, betas=config.betas, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = _schedule(optimizer, config, total_steps)
    model.to(accelerator.device)
    # The scheduler is stepped by hand once per optimizer step (not prepared: accelerate would
    # step it once per process).
    wrapped, optimizer = accelerator.prepare(model, optimizer)

    checkpoints = adapter_dir / CHECKPOINTS_DIR
    start_epoch, losses = 0, []
    latest = _latest_checkpoint(checkpoints, identity)
    if latest is not None:
        start_epoch, path = latest
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        model.load_trainable_state_dict(load_file(str(path / "trainable.safetensors")), "resumed")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        losses = list(state["losses"])
        log.info("resuming finetuning after epoch %d", start_epoch)

    main = accelerator.is_main_process
    bar = tqdm(
        total=total_steps,
        initial=start_epoch * steps_per_epoch,
        desc="finetune",
        unit="step",
        disable=not (progress and main),
    )
    wrapped.train()
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        torch.manual_seed(hash((config.seed, epoch)) & 0xFFFFFFFF)  # dropout: same on resume
        order = _epoch_order(len(examples), config.seed, epoch)
        epoch_losses = []
        for step_start in range(0, len(order), config.batch_size):
            step = [examples[i] for i in order[step_start : step_start + config.batch_size]]
            # Each process takes every n-th example; a process left without one re-reads the
            # first example at zero weight (see _optimizer_step).
            mine = step[accelerator.process_index :: processes] or step[:1]
            idle = accelerator.process_index >= len(step)
            step_loss = _optimizer_step(
                accelerator, wrapped, optimizer, scheduler, mine, images, micro_batch, config, idle
            )
            epoch_losses.append(step_loss)
            bar.update()
            bar.set_postfix(loss=f"{step_loss:.3f}", epoch=epoch + 1)
        mean_loss = sum(epoch_losses) / len(epoch_losses)
        losses.append(
            {
                "epoch": epoch + 1,
                "loss": mean_loss,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        if main:
            _save_checkpoint(checkpoints, epoch + 1, identity, model, optimizer, scheduler, losses)
        accelerator.wait_for_everyone()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, mean_loss)
    bar.close()
    wrapped.eval()
    model.set_trainable()

    fields = {
        "base_model": model.name,
        "base_model_fingerprint": model.fingerprint(),
        "dataset": dataset.source,
        "dataset_sha256": dataset.sha256,
        "split": config.split,
        "examples": len(examples),
        "prompt_format": fmt,
        "shots_as": shots_as,
        "adapter_settings": model.adapter_settings(),
        # The card keeps its own record of the options (an option renamed later still reads).
        "hyperparameters": HyperparametersRecord.model_validate(config.model_dump()),
        "processes": processes,
        "seed": config.seed,
        "epoch_losses": losses,
        "vlmalign_version": vlmalign.__version__,
        "run_identity": identity,
    }
    if main:
        save_adapter(model.trainable_state_dict(), adapter_dir, fields, model.adapter_layout())
        shutil.rmtree(checkpoints, ignore_errors=True)
    accelerator.wait_for_everyone()
    written = read_card(adapter_dir)
    if written is None:  # a process on a disk the main process does not share
        digest = state_hash(model.trainable_state_dict())
        written = AdapterCard.model_validate({**fields, "adapter_hash": digest})
    return written


def _schedule(optimizer: Any, config: FinetuneConfig, total_steps: int) -> Any:
    """Linear warm-up, then cosine decay to 0, or stable then cosine decay (WSD).

    Step k takes the schedule's rate at k + 1 of total + 1: warm-up starts at 0, so unshifted
    the first step would not learn at all (and a one-step finetune would change nothing).
    """
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import get_cosine_schedule_with_warmup, get_wsd_schedule

    warmup = max(1, round(config.warmup_ratio * total_steps))
    if config.schedule == "cosine":
        inner = get_cosine_schedule_with_warmup(optimizer, warmup, total_steps + 1)
    else:
        decay = max(1, round(config.decay_ratio * total_steps))
        inner = get_wsd_schedule(optimizer, warmup, decay, num_training_steps=total_steps + 1)
    rate = inner.lr_lambdas[0]
    return LambdaLR(optimizer, lambda step: rate(step + 1))


def _optimizer_step(
    accelerator: Any,
    wrapped: Any,
    optimizer: Any,
    scheduler: Any,
    examples: Sequence[Example],
    images: dict[str, Any],
    micro_batch: int,
    config: FinetuneConfig,
    zero_weight: bool = False,
) -> float:
    """One optimizer step over this process's share of a batch, accumulated over micro-batches.

    The loss is the mean over examples however they are chunked. A process with no example in
    a short last batch still runs a zero-weighted forward, so gradient all-reduce never hangs.
    """
    weight = 0.0 if zero_weight else 1.0
    chunks = [examples[i : i + micro_batch] for i in range(0, len(examples), micro_batch)]
    total = torch.zeros((), device=accelerator.device)
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(wrapped):
            loss = wrapped(
                [images[e.image_ref] for e in chunk],
                [e.prompt_text for e in chunk],
                [e.answer for e in chunk],
                loss_on=config.loss_on,
            )
            share = weight * len(chunk) / len(examples)
            accelerator.backward(loss * share)
        total += loss.detach() * share
    accelerator.clip_grad_norm_(
        [p for p in wrapped.parameters() if p.requires_grad], config.grad_clip
    )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return float(accelerator.gather(total[None]).mean())


def _save_checkpoint(
    directory: Path,
    epoch: int,
    identity: str,
    model: Trainable,
    optimizer: Any,
    scheduler: Any,
    losses: list[dict[str, Any]],
) -> None:
    path = directory / f"epoch-{epoch}"
    staging = directory / f".epoch-{epoch}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(model.trainable_state_dict(), str(staging / "trainable.safetensors"))
    torch.save(
        {
            "epoch": epoch,
            "identity": identity,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "losses": losses,
        },
        staging / "state.pt",
    )
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    for older in directory.glob("epoch-*"):
        if older != path:
            shutil.rmtree(older, ignore_errors=True)
