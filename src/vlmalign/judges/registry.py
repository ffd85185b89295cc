"""Judges by name, each constructible from its name and listed by `vlmalign judges`.

Each judge is declared once, with `@judge(...)` on its factory (`judges.spec`; the built-in ones
in `judges.builtin`), and registered as an entry point of the group `vlmalign.judges`, in
vlmalign's pyproject.toml or a plugin's (docs/plugins.md); `JUDGES` reads them on first use.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlmalign.errors import ConfigError
from vlmalign.hashing import stable_hash
from vlmalign.judges.base import Judge
from vlmalign.judges.options import AUTO, JudgeOptions
from vlmalign.judges.spec import JudgeFactory, JudgeSpec, judge
from vlmalign.naming import resolve_name, split_name
from vlmalign.registries import PluginRegistry

__all__ = [
    "JUDGES",
    "JudgeFactory",
    "JudgeRef",
    "JudgeSpec",
    "build_judge",
    "check_options",
    "declared_version",
    "is_graded",
    "judge",
    "judge_config_hash",
    "judge_spec",
    "options_by_judge",
    "parse_judge_ref",
    "parse_judge_refs",
]


#: Every judge by name: vlmalign's own (judges/builtin.py) and those of installed plugins.
JUDGES: PluginRegistry[JudgeSpec] = PluginRegistry(
    "vlmalign.judges", JudgeSpec, "judge", builtins="vlmalign.judges.builtin"
)


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
    given = options.with_defaults(spec.options, **defaults)
    built = JUDGES.built(spec.name, lambda: spec.configured(argument, given), ConfigError)
    built.name = ref.identity  # the class's `name` stays the kind
    if not auto:
        return built
    from vlmalign.judges.threshold import ThresholdedJudge  # numpy and stats: only when asked

    return ThresholdedJudge(built)


def declared_version(name: str) -> int | None:
    """The version the judge `name` is declared with (recorded by judges that build on it)."""
    return JUDGES[name].version


def is_graded(config: dict[str, Any]) -> bool:
    """Whether the judge with this recorded configuration (its `name` is the kind) is graded."""
    spec = JUDGES.get(str(config.get("name", "")))
    return spec is not None and spec.graded


def judged_kinds(config: Mapping[str, Any]) -> frozenset[str] | None:
    """The item kinds the judge with this recorded configuration reads (None: not known, e.g.
    a judge registered by a plugin that is not loaded; then every item counts)."""
    spec = JUDGES.get(str(config.get("name", "")))
    return None if spec is None else spec.item_kinds


def judge_config_hash(judge: Judge | Mapping[str, Any]) -> str:
    """Verdicts are stored per judge configuration, so a changed judge re-judges. A built
    judge, or the configuration a run recorded (its provenance's `judges`)."""
    return stable_hash(judge if isinstance(judge, Mapping) else judge.config())
