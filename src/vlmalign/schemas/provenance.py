"""What produced a study run: versions, model, adapter, data, sampling, seeds and judges.

Recorded in the store with each run (`study_runs.provenance`) and copied into `results.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field

from vlmalign.schemas.adapter_card import AdapterCard, EpochLoss, HyperparametersRecord
from vlmalign.schemas.base import Record, SettingsRecord
from vlmalign.schemas.judge_validity import ValidityEntry
from vlmalign.schemas.terms import PromptFormat, ShotsAs, Split

#: Version of the provenance's shape (docs/artifacts.md).
PROVENANCE_SCHEMA_VERSION: Final = 1


class SamplingRecord(SettingsRecord):
    """How responses were sampled: the study's `sampling.SamplingParams` as they were."""

    max_new_tokens: int = 15
    temperature: float = Field(0.7, description="0 means greedy decoding")
    top_k: int = Field(0, description="0 = off")
    top_p: float = Field(1.0, description="1.0 = off")


class EndpointRecord(SettingsRecord):
    """Where an `openai:` model's endpoint was and how it was asked: the config's `api:` section
    (`models.endpoint.EndpointSettings`) as it was, with the URL used (never the key)."""

    base_url: str | None = Field(None, description="the endpoint's /v1 URL that was used")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable that held the API key"
    )
    max_concurrency: int = Field(8, description="requests in flight at once")
    requests_per_minute: float | None = Field(
        None, description="start at most this many requests a minute (null: no limit)"
    )
    timeout_s: float = Field(120.0, description="seconds to wait for one reply")
    max_retries: int = Field(6, description="retries of a 429, 5xx, timeout or dropped connection")
    use_n: bool = Field(True, description="a prompt's samples asked in one request (`n`)")
    accepts_top_k: bool | None = Field(None, description="whether the endpoint takes `top_k`")
    max_image_side: int | None = Field(
        None, description="images downscaled past this longer side (null: sent as they are)"
    )


class AdapterSummary(Record):
    """The finetuned adapter a run evaluated: where it is and the headlines of its card."""

    path: str
    adapter_hash: str | None = None
    base_model: str | None = None
    dataset_sha256: str | None = None
    split: Split | None = None
    hyperparameters: HyperparametersRecord | None = None
    epoch_losses: list[EpochLoss] = Field(default_factory=list)
    prompt_format: PromptFormat | None = None

    @classmethod
    def of(cls, card: AdapterCard, path: Path) -> AdapterSummary:
        return cls(
            path=str(path),
            adapter_hash=card.adapter_hash,
            base_model=card.base_model,
            dataset_sha256=card.dataset_sha256,
            split=card.split,
            hyperparameters=card.hyperparameters,
            epoch_losses=card.epoch_losses,
            prompt_format=card.prompt_format,
        )


class Provenance(Record):
    """One study run's provenance. A run recorded now has every field; runs recorded by older
    versions lack the later ones, which then read as null (or empty)."""

    # Filled in as the run goes (judge configs after fitting, the adapter once trained).
    model_config = ConfigDict(validate_assignment=True)

    schema_version: Literal[1] = Field(
        PROVENANCE_SCHEMA_VERSION, description="runs recorded before versions existed read as 1"
    )
    vlmalign_version: str | None = None
    git_commit: str | None = Field(
        None, description="commit of the vlmalign checkout ('-dirty' if changed); null for a wheel"
    )
    python: str | None = None
    platform: str | None = None
    torch: str | None = None
    transformers: str | None = None
    model: str | None = Field(None, description="model preset as given (e.g. mini, hf:ID)")
    model_fingerprint: str | None = Field(None, description="base weights + architecture hash")
    adapter_hash: str | None = Field(None, description="weights hash of a loaded adapter")
    dataset: str | None = None
    dataset_sha256: str | None = None
    prompt_format: PromptFormat | None = None
    shots_as: ShotsAs | None = None
    engine: str | None = Field(None, description="hf (transformers) or vllm")
    sampling: SamplingRecord | None = None
    samples_per_prompt: int | None = None
    seed: int | None = Field(None, description="study seed; each sample's seed derives from it")
    judges: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="judge identity -> its config() (each judge's own shape; hashed to key its "
        "verdicts)",
    )
    judge_heldout_validity: dict[str, ValidityEntry] = Field(
        default_factory=dict, description="judge identity -> validity on its own held-out data"
    )
    finetuned_adapter: AdapterSummary | None = None
    endpoint: EndpointRecord | None = Field(
        None,
        description="openai: models: the endpoint's settings with the URL used (the key is "
        "never recorded, only the variable that holds it)",
    )

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values, as the store keeps them. A judge config value JSON has no type for
        becomes its text, as it does in the judge's config hash (`hashing.stable_hash`)."""
        return self.model_dump(mode="json", fallback=str)
