"""Artifacts by name, for `vlmalign schema NAME`. Models are imported only when asked for."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import BaseModel

from vlmalign.errors import VlmalignError
from vlmalign.schemas.base import written_json_schema


@dataclass(frozen=True)
class Artifact:
    name: str
    file: str
    description: str
    model_path: str  # "module:Class", imported on use

    def model(self) -> type[BaseModel]:
        module, attribute = self.model_path.split(":")
        model: type[BaseModel] = getattr(import_module(module), attribute)
        return model


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact(
            "results",
            "RUN_DIR/results.json",
            "cells, comparisons, breakdowns, judge validity, human agreement, provenance",
            "vlmalign.schemas.results:Results",
        ),
        Artifact(
            "adapter-card",
            "RUN_DIR/adapter/adapter.json",
            "a finetuned adapter: its hash, base model and training record",
            "vlmalign.schemas.adapter_card:AdapterCard",
        ),
        Artifact(
            "provenance",
            "study.sqlite (study_runs), results.json",
            "what produced a run: versions, model, adapter, data, sampling, seeds, judges",
            "vlmalign.schemas.provenance:Provenance",
        ),
        Artifact(
            "judge-validity",
            "entries of results.json and of the validity file",
            "one judge on one source of known verdicts",
            "vlmalign.schemas.judge_validity:ValidityEntry",
        ),
        Artifact(
            "judge-validity-file",
            "vlmalign judges validate --output FILE",
            "the validity entries of `judges validate`",
            "vlmalign.schemas.judge_validity:ValidityFile",
        ),
    )
}


def artifact(name: str) -> Artifact:
    """The artifact called `name`; a `VlmalignError` naming the known ones otherwise."""
    try:
        return ARTIFACTS[name]
    except KeyError:
        known = ", ".join(ARTIFACTS)
        raise VlmalignError(f"unknown schema {name!r}; one of: {known}") from None


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the artifact called `name`, as vlmalign writes it."""
    return written_json_schema(artifact(name).model())
