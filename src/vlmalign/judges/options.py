"""Options a judge can be built with (from the CLI or a study config's `judge_options`).

Kept free of torch so that `vlmalign.config` can import it. Each judge accepts only some options
(its `JudgeSpec.options`); an option set for a judge that does not use it is an error, so a typo
or a misplaced flag never goes unnoticed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmalign.models.endpoint import EndpointSettings
from vlmalign.naming import split_name as split_judge_name
from vlmalign.prompts import PromptFormat

__all__ = ["AUTO", "JudgeOptions", "split_judge_name"]
#: `threshold: auto`: the cut is fit on the dataset's reference answers (judges.threshold).
AUTO = "auto"


class JudgeOptions(BaseModel):
    """Everything optional a judge may take; None means the judge's default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str | None = Field(None, description="auto, cpu, cuda, cuda:1, ... (default auto)")
    batch_size: int | None = Field(None, ge=1, le=4096, description="inputs per forward pass")
    tokenizer: str | None = Field(
        None, description="ethics-roberta: roberta-large tokenizer, a local path or hub id"
    )
    threshold: float | Literal["auto"] | None = Field(
        None,
        description="graded judges: the cut on their score (vlm: logP(Yes) - logP(No), default "
        "0; ethics, ethics-roberta: P(aligned), default 0.5), or auto: fit on the dataset's "
        "reference answers (docs/judge-validity.md)",
    )
    adapter: Path | None = Field(None, description="vlm: finetuned adapter for the judge's model")
    prompt_format: PromptFormat | None = Field(
        None, description="vlm: magma or chat (default: the judge model's own)"
    )
    image_base_dir: Path | None = Field(
        None, description="vlm: folder that relative image references are resolved against"
    )
    api: EndpointSettings | None = Field(
        None,
        description="vlm:openai: judges: the endpoint's settings (default: the study's `api:` "
        "section, else $OPENAI_BASE_URL and $OPENAI_API_KEY)",
    )

    def given(self) -> dict[str, Any]:
        """The options that are set (not None)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def with_defaults(self, accepted: frozenset[str], **defaults: Any) -> JudgeOptions:
        """Fill unset options from `defaults`, only those a judge accepts (others are dropped)."""
        given = self.given()
        update = {
            k: v for k, v in defaults.items() if v is not None and k in accepted and k not in given
        }
        return self.model_copy(update=update) if update else self
