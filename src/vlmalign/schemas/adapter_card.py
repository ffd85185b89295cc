"""`adapter/adapter.json`: what a finetuned adapter is, what it fits, and how it was trained."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from vlmalign.schemas.base import Record, SettingsRecord
from vlmalign.schemas.terms import PromptFormat, ShotsAs, Split

#: Version of the card's shape (docs/artifacts.md: additions keep it, renames and removals bump it).
CARD_SCHEMA_VERSION: Final = 1


class HyperparametersRecord(SettingsRecord):
    """How an adapter was trained: the finetuning options (`config.FinetuneConfig`) as they were,
    in the card's own fields. An option this version does not know (renamed since, or added by a
    newer version) is kept as it was written; one a card lacks reads as its default here."""

    epochs: int = 4
    batch_size: int = Field(8, description="examples per optimizer step, all processes")
    lr: float = Field(5e-3, description="adapters and image-prefix projection")
    encoder_lr: float | None = Field(None, description="image encoder's rate (null: frozen)")
    prefix_lr: float | None = Field(
        None, description="image-prefix projection + LayerNorm (null: lr)"
    )
    warmup_ratio: float = 0.1
    schedule: str = Field("wsd", description="after warm-up: wsd or cosine")
    decay_ratio: float = Field(0.1, description="wsd: share of steps spent decaying")
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    grad_accum: int = 1
    loss_on: str = Field("answer", description="answer or caption")
    split: Split = "train"
    seed: int = 0
    mixed_precision: str = Field("auto", description="auto, no, fp16 or bf16")
    lora_r: int = Field(16, description="LoRA rank (models finetuned through LoRA)")
    lora_alpha: int = Field(32, description="LoRA scale is alpha / r")
    lora_dropout: float = 0.05


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
    hyperparameters: HyperparametersRecord | None = None
    processes: int | None = Field(None, description="training processes (accelerate)")
    seed: int | None = None
    epoch_losses: list[EpochLoss] = Field(default_factory=list)
    vlmalign_version: str | None = None
    run_identity: str | None = Field(
        None, description="hash of what a finished adapter must match to be reused"
    )
