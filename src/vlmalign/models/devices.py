"""A device name as given ('auto', 'cpu', 'cuda:1') -> a torch device (torch imported on call)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmalign.errors import ModelError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}") from exc
