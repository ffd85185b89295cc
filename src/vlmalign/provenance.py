"""What produced a run: versions, git commit, platform, and the study's model, data, sampling,
seeds and judges (`schemas.provenance.Provenance`)."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import vlmalign
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.schemas.provenance import EndpointRecord, Provenance, SamplingRecord

if TYPE_CHECKING:
    from vlmalign.config import StudyConfig
    from vlmalign.data.dataset import Dataset
    from vlmalign.judges.base import Judge
    from vlmalign.models.base import PromptedModel
    from vlmalign.prompts import PromptFormat


@cache
def git_commit() -> str | None:
    """The commit of the vlmalign checkout this code runs from (None for an installed wheel)."""
    source = Path(vlmalign.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    if result.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def study_provenance(
    model: PromptedModel,
    dataset: Dataset,
    config: StudyConfig,
    prompt_format: PromptFormat,
    judges: Sequence[Judge],
) -> Provenance:
    """A study run's provenance as it starts; the run adds held-out validity, fitted judge
    configs and the finetuned adapter as it goes."""
    return Provenance(
        vlmalign_version=vlmalign.__version__,
        git_commit=git_commit(),
        python=platform.python_version(),
        platform=platform.platform(),
        torch=package_version("torch"),
        transformers=package_version("transformers"),
        model=model.name,
        model_fingerprint=model.fingerprint(),
        adapter_hash=model.adapter_hash(),
        dataset=dataset.source,
        dataset_sha256=dataset.sha256,
        prompt_format=prompt_format,
        shots_as=config.shots_as,
        engine=config.engine,
        sampling=SamplingRecord.model_validate(config.sampling.model_dump()),
        samples_per_prompt=config.samples,
        seed=config.seed,
        judges={judge.name: judge.config() for judge in judges},
        endpoint=endpoint_record(model, config),
    )


def endpoint_record(model: PromptedModel, config: StudyConfig) -> EndpointRecord | None:
    """A remote model's endpoint settings, with the URL actually used (never the key)."""
    settings = getattr(model, "settings", None)
    if not isinstance(settings, EndpointSettings):
        return None
    return EndpointRecord.model_validate({**settings.model_dump(), "base_url": settings.url()})
