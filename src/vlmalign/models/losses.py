"""The finetuning objective shared by the transformers backends."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mean_per_example(
    logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, examples: int
) -> torch.Tensor:
    """Each example's mean next-token loss over its scored tokens, averaged over examples.

    Every answer weighs the same however many tokens it has, so a batch's loss is the mean of
    its examples' losses: taken in micro-batches (gradient accumulation) or split over
    processes, weighting each part by its number of examples gives exactly the whole batch.
    `logits` and `targets` hold the scored positions only; `rows` says whose each one is.
    """
    token_losses = F.cross_entropy(logits.float(), targets, reduction="none")
    sums = token_losses.new_zeros(examples).index_add_(0, rows, token_losses)
    counts = token_losses.new_zeros(examples).index_add_(0, rows, torch.ones_like(token_losses))
    return (sums / counts.clamp(min=1)).mean()
