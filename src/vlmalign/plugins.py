"""What a plugin package imports to add a model, a judge or a dataset source (docs/plugins.md).

A plugin names its specs as entry points of the groups `vlmalign.models`, `vlmalign.judges` and
`vlmalign.datasets`; vlmalign reads them on first use (`vlmalign.registries`). Everything here
is torch-free, so importing it costs a plugin nothing.

    from vlmalign.plugins import Model, ModelSpec, judge, Verdict

- A model: subclass `Model`, write `generate`; declare a `ModelSpec` whose `factory` builds it
  from `LoadOptions` (its `argument` is what follows `NAME:`). Declare `capabilities` beyond
  "generate" only for roles the model fills (`Scorer`, `Trainable`, `ServesAdapters`).
- A judge: a class with `name`, `config()` and `judge(inputs) -> list[Verdict]`; its factory
  decorated with `@judge(...)` becomes its `JudgeSpec`.
- A dataset source: a `DatasetSource` whose `load(argument)` returns a JSONL file's `Path` or
  `SourceData` (the items, a content hash, the images' folder).
"""

from __future__ import annotations

from vlmalign.data.sources import DatasetSource, SourceData
from vlmalign.errors import ConfigError, DatasetError, ModelError
from vlmalign.judges.base import Judge, JudgeInput, Verdict
from vlmalign.judges.options import JudgeOptions
from vlmalign.judges.spec import JudgeSpec, judge
from vlmalign.models.base import (
    Generated,
    GenerationRequest,
    Model,
    Scorer,
    ScoringRequest,
    ServesAdapters,
    Trainable,
)
from vlmalign.models.spec import Capability, LoadOptions, ModelSpec
from vlmalign.prompts import Prompt
from vlmalign.sampling import SamplingParams

__all__ = [
    "Capability",
    "ConfigError",
    "DatasetError",
    "DatasetSource",
    "Generated",
    "GenerationRequest",
    "Judge",
    "JudgeInput",
    "JudgeOptions",
    "JudgeSpec",
    "LoadOptions",
    "Model",
    "ModelError",
    "ModelSpec",
    "Prompt",
    "SamplingParams",
    "Scorer",
    "ScoringRequest",
    "ServesAdapters",
    "SourceData",
    "Trainable",
    "Verdict",
    "judge",
]
