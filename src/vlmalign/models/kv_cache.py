"""KV-cache bookkeeping for the shared decode path: which argument carries the cache, rows
copied from prompts to their samples, caches of different lengths joined into one batch, and
layers with room to grow (a step writes into the room instead of copying the layer)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer


def cache_argument(model: Any) -> str:
    """transformers renamed `past_key_values` to `cache`; use whichever this version takes."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    return output["cache"] if "cache" in output else output["past_key_values"]


def select_cache_rows(cache: Any, rows: torch.Tensor) -> Any:
    """The cache with one row per entry of `rows` (a row index may repeat: copies)."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(rows.to(_cache_device(cache, rows.device)))
        return cache
    return tuple(tuple(tensor[rows.to(tensor.device)] for tensor in layer) for layer in cache)


def _cache_device(cache: Any, default: torch.device) -> torch.device:
    for layer in getattr(cache, "layers", ()):
        keys = getattr(layer, "keys", None)
        if isinstance(keys, torch.Tensor):
            return keys.device
    return default


class _LayerWithRoom(DynamicLayer):
    """A dynamic cache layer whose keys and values are views of buffers with room to grow:
    a step writes its token into the room instead of copying the whole layer (torch.cat)."""

    def __init__(self, layer: DynamicLayer, room: int) -> None:
        super().__init__()
        keys, values = layer.keys, layer.values
        if keys is None or values is None:
            raise ValueError("an empty cache layer has nothing to make room after")
        self._room = [self._with_room(keys, room), self._with_room(values, room)]
        self._length = keys.shape[-2]
        self.keys = self._room[0][..., : self._length, :]
        self.values = self._room[1][..., : self._length, :]
        self.device = keys.device
        self.is_initialized = True

    @staticmethod
    def _with_room(states: torch.Tensor, room: int) -> torch.Tensor:
        shape = (*states.shape[:-2], states.shape[-2] + room, states.shape[-1])
        buffer = states.new_empty(shape)
        buffer[..., : states.shape[-2], :] = states
        return buffer

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self._length + key_states.shape[-2]
        if end > self._room[0].shape[-2]:  # out of room: grow as transformers does
            self._room = [
                torch.cat([self._room[0][..., : self._length, :], key_states], -2),
                torch.cat([self._room[1][..., : self._length, :], value_states], -2),
            ]
        else:
            self._room[0][..., self._length : end, :] = key_states
            self._room[1][..., self._length : end, :] = value_states
        self._length = end
        self.keys = self._room[0][..., :end, :]
        self.values = self._room[1][..., :end, :]
        return self.keys, self.values


def make_room(cache: Any, positions: int) -> Any:
    """Let each layer of a dynamic KV cache grow by `positions` without copying itself at
    every step (a tenth of a decode step on CPU). Other caches are left as they are."""
    layers = getattr(cache, "layers", None)
    if positions < 1 or not isinstance(layers, list):
        return cache
    cache.layers = [
        _LayerWithRoom(layer, positions)
        if type(layer) is DynamicLayer
        and layer.is_initialized
        and layer.keys is not None
        and layer.keys.dim() == 4
        else layer
        for layer in layers
    ]
    return cache


def left_padded(tensor: torch.Tensor, length: int, sequence_dim: int) -> torch.Tensor:
    """`tensor` padded with zeros before its sequence dimension up to `length`."""
    missing = length - tensor.shape[sequence_dim]
    if not missing:
        return tensor
    after = tensor.dim() - 1 - (sequence_dim % tensor.dim())  # dims after the sequence's
    return F.pad(tensor, (0, 0) * after + (missing, 0))


def stack_caches(caches: Sequence[Any], length: int) -> Any:
    """Dynamic KV caches of different lengths as one batch (rows in order), each left-padded
    to `length`; the first cache object is reused."""
    layers = [getattr(cache, "layers", None) for cache in caches]
    if any(
        not isinstance(cache_layers, list)
        or any(type(layer) is not DynamicLayer for layer in cache_layers)
        for cache_layers in layers
    ):
        raise ValueError("only dynamic KV caches can be stacked")
    for index, layer in enumerate(caches[0].layers):
        layer.keys = torch.cat([left_padded(c.layers[index].keys, length, -2) for c in caches])
        layer.values = torch.cat([left_padded(c.layers[index].values, length, -2) for c in caches])
    return caches[0]
