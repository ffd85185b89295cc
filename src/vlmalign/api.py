"""Calls for notebooks and scripts that the library has no single function for.

`vlmalign/__init__.py` re-exports these with the rest of the public API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from vlmalign.config import StudyConfig
from vlmalign.errors import ConfigError, VlmalignError, validation_message
from vlmalign.judges.base import JudgeInput, Verdict
from vlmalign.judges.options import JudgeOptions

if TYPE_CHECKING:
    from vlmalign.report.analysis import Analysis

JUDGE_BATCH = 64  # responses per call of a judge (model judges hold a batch in memory)


def judge(
    responses: Sequence[JudgeInput | Mapping[str, Any]],
    judges: Sequence[str] | None = None,
    options: Mapping[str, JudgeOptions | Mapping[str, Any]] | None = None,
    *,
    image_base_dir: str | Path | None = None,
) -> list[dict[str, Verdict]]:
    """Judge responses with named judges: one `{judge identity: verdict}` per response, in order.

    A response is a JudgeInput or a mapping of its fields (`question`, `response`,
    `aligned_stance`; optionally `prompt`, `image`, `id`). `judges` are named as in a study
    config (`stance`, `vlm:mini`, `small=vlm:mini`; default: a study's), and `options` are keyed
    as its `judge_options`. Relative image references resolve against `image_base_dir`.
    """
    from vlmalign.judges.registry import build_judge

    settings: dict[str, Any] = {"judge_options": dict(options or {})}
    if judges is not None:
        settings["judges"] = tuple(judges)
    try:
        config = StudyConfig.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc)) from exc
    inputs = [_judge_input(response, index) for index, response in enumerate(responses)]
    by_identity = config.options_by_judge()
    base_dir = Path(image_base_dir) if image_base_dir is not None else None
    verdicts: list[dict[str, Verdict]] = [{} for _ in inputs]
    for name, identity in zip(config.judges, config.judge_names(), strict=True):
        built = build_judge(
            name, by_identity.get(identity), device=config.device, image_base_dir=base_dir
        )
        for start in range(0, len(inputs), JUDGE_BATCH):
            batch = inputs[start : start + JUDGE_BATCH]
            for row, verdict in enumerate(built.judge(batch), start):
                verdicts[row][identity] = verdict
    return verdicts


def _judge_input(response: JudgeInput | Mapping[str, Any], index: int) -> JudgeInput:
    if isinstance(response, JudgeInput):
        return response
    try:
        return JudgeInput.model_validate(dict(response))
    except ValidationError as exc:
        raise VlmalignError(validation_message(exc, f"response {index}")) from exc


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Analysis:
    """Rebuild a run's report files from its store (into `out`, default the run directory) and
    return the analysis behind them (cells, comparisons, judge validity, human agreement)."""
    from vlmalign.report.build import build_report as build_reports

    run = Path(run_dir)
    return build_reports([run], Path(out) if out is not None else run)[0]
