"""Command-line options that set config fields, with the config class's own defaults."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from vlmalign.config import StudyConfig
from vlmalign.models.endpoint import EndpointSettings

# --- options that set config fields -----------------------------------------------------------
# Such an option defaults to None, meaning "the config's value" (a YAML file's, else the
# default), and its help shows the config's default, read from the config class itself: a
# default is written once, in config.py.


def shown_default(config: type[BaseModel], field: str) -> str | bool:
    """A config field's default as `[default: (...)]` shows it; False when it is unset (None)."""
    value = config.model_fields[field].get_default(call_default_factory=True)
    if value is None:
        return False
    if isinstance(value, tuple | list):
        return ", ".join(str(part) for part in value)
    return str(value)


def setting(
    config: type[BaseModel], field: str, help: str, *names: str, panel: str | None = None
) -> Any:
    """An option that sets `field` of `config` (StudyConfig or its FinetuneConfig or
    EndpointSettings section), shown under `panel` in --help when given."""
    return typer.Option(
        *names, help=help, show_default=shown_default(config, field), rich_help_panel=panel
    )


# Parameters named otherwise than the field they set (`out` names the console).
FIELD_OF_PARAMETER = {"out_dir": "out", "judge_names": "judges"}


def given(
    ctx: typer.Context, config: type[BaseModel], besides: Collection[str] = ()
) -> dict[str, Any]:
    """The options of this command that set a field of `config` and were given on the command
    line; `besides` names fields left out (they belong to another section, or mean another
    thing here)."""
    given = {}
    for name, value in ctx.params.items():
        field = FIELD_OF_PARAMETER.get(name, name)
        unset = value is None or (isinstance(value, list | tuple) and not value)  # no --judge
        if field in config.model_fields and field not in besides and not unset:
            given[field] = value
    return given


DatasetOption = Annotated[
    str | None, setting(StudyConfig, "dataset", "JSONL file, builtin:NAME or hf:SOURCE")
]
ModelOption = Annotated[
    str | None, setting(StudyConfig, "model", "model preset (see `vlmalign models`)")
]
SamplesOption = Annotated[int | None, setting(StudyConfig, "samples", "samples per prompt")]
SeedOption = Annotated[int | None, setting(StudyConfig, "seed", "study seed")]
DeviceOption = Annotated[str | None, setting(StudyConfig, "device", "auto, cpu, cuda, cuda:1, ...")]
PromptFormatOption = Annotated[
    str | None, setting(StudyConfig, "prompt_format", "magma or chat (unset: the model's own)")
]
ShotsAsOption = Annotated[
    str | None,
    setting(StudyConfig, "shots_as", "chat format: shots inline (one user turn) or as turns"),
]
EngineOption = Annotated[
    str | None,
    setting(StudyConfig, "engine", "hf (transformers) or vllm (hf: models on a GPU)"),
]
TensorParallelOption = Annotated[
    int | None,
    setting(StudyConfig, "tensor_parallel_size", "--engine vllm: GPUs per copy of the model"),
]
DataParallelOption = Annotated[
    int | None,
    setting(
        StudyConfig,
        "data_parallel_size",
        "--engine vllm: copies of the model (under accelerate launch, docs/scaling.md)",
    ),
]
JudgesOption = Annotated[
    list[str] | None,
    setting(
        StudyConfig,
        "judges",
        "NAME, NAME:ARGUMENT or LABEL=NAME[:ARGUMENT] (repeatable)",
        "--judge",
    ),
]
# The `api:` section: how `openai:` models and `vlm:openai:` judges reach their endpoint.
ENDPOINT = "Endpoint (openai: models and judges)"
BaseUrlOption = Annotated[
    str | None,
    setting(
        EndpointSettings,
        "base_url",
        "the endpoint's /v1 URL (unset: $OPENAI_BASE_URL, else OpenAI's)",
        panel=ENDPOINT,
    ),
]
ApiKeyEnvOption = Annotated[
    str | None,
    setting(
        EndpointSettings,
        "api_key_env",
        "environment variable holding the API key (the key is never written anywhere)",
        panel=ENDPOINT,
    ),
]
MaxConcurrencyOption = Annotated[
    int | None,
    setting(EndpointSettings, "max_concurrency", "requests in flight at once", panel=ENDPOINT),
]
RequestsPerMinuteOption = Annotated[
    float | None,
    setting(
        EndpointSettings,
        "requests_per_minute",
        "start at most this many requests a minute (unset: no limit)",
        panel=ENDPOINT,
    ),
]
TimeoutOption = Annotated[
    float | None,
    setting(EndpointSettings, "timeout_s", "seconds to wait for one reply", panel=ENDPOINT),
]
MaxRetriesOption = Annotated[
    int | None,
    setting(
        EndpointSettings,
        "max_retries",
        "retries of a 429, 5xx, timeout or dropped connection (backoff, Retry-After)",
        panel=ENDPOINT,
    ),
]
ConfigArgument = Annotated[
    Path | None,
    typer.Argument(help="YAML study config (optional; options given here override it)"),
]
QuietOption = Annotated[bool, typer.Option(help="no progress bars")]
STUDY_DEFAULTS = StudyConfig()
