"""`adapter/adapter.json`: what a finetuned adapter is, what it fits, and how it was trained."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from vlmalign.config import FinetuneConfig
from vlmalign.data.schema import Split
from vlmalign.prompts import PromptFormat, ShotsAs
from vlmalign.schemas.base import Record

#: Version of the card's shape (docs/artifacts.md: additions keep it, renames and removals bump it).
CARD_SCHEMA_VERSION: Final = 1


class EpochLoss(Record):
    """Mean training loss of one epoch."""

    epoch: int = Field(ge=1)
    loss: float
    seconds: float | None = None


class AdapterCard(Record):
    """The card written beside `adapter.safetensors`; its presence marks a complete checkpoint.

    `adapter_hash`, `base_model` and `base_model_fingerprint` are what loading checks; the
    training fields are absent (null) on cards of adapters that `vlmalign finetune` did not train.
    """

    schema_version: Literal[1] = Field(
        CARD_SCHEMA_VERSION, description="cards written before versions existed read as 1"
    )
    adapter_hash: str = Field(description="sha256 of the weights (names, shapes, dtypes, values)")
    base_model: str = Field(description="the model preset the adapter was trained on")
    base_model_fingerprint: str = Field(description="base weights + architecture hash")
    adapter_settings: dict[str, Any] = Field(
        default_factory=dict, description="how the weights are shaped (e.g. LoRA rank); model's own"
    )
    dataset: str | None = None
    dataset_sha256: str | None = None
    split: Split | None = None
    examples: int | None = Field(None, description="training examples (items of the split)")
    prompt_format: PromptFormat | None = None
    shots_as: ShotsAs | None = None
    hyperparameters: FinetuneConfig | None = None
    processes: int | None = Field(None, description="training processes (accelerate)")
    seed: int | None = None
    epoch_losses: list[EpochLoss] = Field(default_factory=list)
    vlmalign_version: str | None = None
    run_identity: str | None = Field(
        None, description="hash of what a finished adapter must match to be reused"
    )
