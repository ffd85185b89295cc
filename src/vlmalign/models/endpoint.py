"""How to reach an OpenAI-compatible endpoint: the config's `api:` section (no openai import).

The key itself is never part of a config: `api_key_env` names the environment variable that
holds it, so nothing that records a config (provenance, results.json, logs) can hold the key.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

BASE_URL_ENV = "OPENAI_BASE_URL"
KEY_ENV = "OPENAI_API_KEY"
OPENAI_URL = "https://api.openai.com/v1"


class EndpointSettings(BaseModel):
    """Where the endpoint is, how hard to push it, and how long to wait for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = Field(
        None, description=f"the endpoint's /v1 URL (unset: ${BASE_URL_ENV}, else OpenAI's)"
    )
    api_key_env: str = Field(
        KEY_ENV, min_length=1, description="environment variable that holds the API key"
    )
    max_concurrency: int = Field(8, ge=1, le=1024, description="requests in flight at once")
    requests_per_minute: float | None = Field(
        None, gt=0, description="start at most this many requests a minute (unset: no limit)"
    )
    timeout_s: float = Field(120.0, gt=0, le=3600, description="seconds to wait for one reply")
    max_retries: int = Field(
        6, ge=0, le=100, description="retries of a 429, 5xx, timeout or dropped connection"
    )
    use_n: bool = Field(
        True,
        description="ask a prompt's samples in one request (`n`) where the endpoint gives them; "
        "false: one request per sample",
    )
    accepts_top_k: bool | None = Field(
        None,
        description="whether the endpoint takes `top_k` (unset: yes for vLLM and SGLang servers, "
        "as their /models says)",
    )
    max_image_side: int | None = Field(
        None,
        ge=16,
        le=16384,
        description="downscale images whose longer side exceeds this (unset: sent as they are)",
    )

    def url(self) -> str:
        """The base URL in use: the setting, else $OPENAI_BASE_URL, else OpenAI's."""
        return self.base_url or os.environ.get(BASE_URL_ENV) or OPENAI_URL

    def is_openai(self) -> bool:
        return self.url().rstrip("/") == OPENAI_URL
