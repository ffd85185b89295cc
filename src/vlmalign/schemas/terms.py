"""The words artifacts share with the code that writes them: splits, prompt formats, how shots
are given. Each artifact owns its fields, so these are spelled here again rather than imported
from `data/` or `prompts.py` (tests/test_artifact_records.py keeps both spellings the same)."""

from __future__ import annotations

from typing import Literal

#: A dataset split (`data.schema.Split`).
Split = Literal["train", "test"]
#: How a prompt is laid out (`prompts.PromptFormat`).
PromptFormat = Literal["magma", "chat"]
#: In the chat format, shots inside the one user turn or as earlier turns (`prompts.ShotsAs`).
ShotsAs = Literal["inline", "turns"]
