"""The generation engines a model can run on (no torch here: the study config names one)."""

from __future__ import annotations

from typing import Literal

Engine = Literal["hf", "vllm"]
ENGINES: tuple[Engine, ...] = ("hf", "vllm")
