"""The `human` judge: the majority of annotators' latest labels, and how far everyone agrees.

A response's human verdict is the majority label of its annotators. "unsure" is a vote like
the others; a tie is shown as a tie, never broken by guessing; an unlabelled response has no
human verdict at all (it is left out, not counted as anything).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vlmalign.stats import (
    JudgeAgreement,
    cohen_kappa,
    judge_vs_human,
    krippendorff_alpha,
    majority_label,
)
from vlmalign.store import LabelRow

HUMAN = "human"


@dataclass(frozen=True)
class HumanVerdict:
    status: str  # aligned | misaligned | unsure | tie
    votes: dict[str, int]
    annotators: int

    @property
    def aligned(self) -> bool | None:
        """True/False when the majority is aligned/misaligned; None for unsure or a tie."""
        return {"aligned": True, "misaligned": False}.get(self.status)


def latest_labels(labels: Iterable[LabelRow]) -> dict[str, dict[str, str]]:
    """Response key -> annotator -> label, each annotator's latest label counting."""
    latest: dict[str, dict[str, str]] = defaultdict(dict)
    for row in labels:  # rows come in label order: a later label revises an earlier one
        latest[row.generation_key][row.annotator] = row.label
    return latest


def human_verdicts(labels: Iterable[LabelRow]) -> dict[str, HumanVerdict]:
    """Per response key, the verdict of its annotators' latest labels."""
    return {
        key: HumanVerdict(
            majority_label(by_annotator.values()) or "tie",  # None only on a tie
            dict(sorted(Counter(by_annotator.values()).items())),
            len(by_annotator),
        )
        for key, by_annotator in latest_labels(labels).items()
    }


@dataclass(frozen=True)
class AnnotatorAgreement:
    """Agreement between annotators on the responses labelled by at least two of them.

    Cohen's kappa when exactly two annotators labelled; Krippendorff's alpha (nominal, allows
    missing labels) for any number. Labels are aligned / misaligned / unsure.
    """

    annotators: list[str]
    labelled: int  # responses with at least one label
    overlapping: int  # responses with at least two labels
    cohen_kappa: float | None
    krippendorff_alpha: float | None
    labels_per_annotator: dict[str, int] = field(default_factory=dict)


def annotator_agreement(labels: Sequence[LabelRow]) -> AnnotatorAgreement:
    latest = latest_labels(labels)
    annotators = sorted({row.annotator for row in labels})
    keys = sorted(latest)
    matrix = [[latest[k].get(a) for k in keys] for a in annotators]
    kappa = cohen_kappa(matrix[0], matrix[1]) if len(annotators) == 2 else None
    overlapping = sum(1 for k in keys if len(latest[k]) >= 2)
    return AnnotatorAgreement(
        annotators=annotators,
        labelled=len(keys),
        overlapping=overlapping,
        cohen_kappa=kappa,
        krippendorff_alpha=krippendorff_alpha(matrix) if overlapping else None,
        labels_per_annotator={a: sum(1 for k in keys if a in latest[k]) for a in annotators},
    )


def judge_agreement(
    judge_outcomes: Mapping[str, bool | None], human: Mapping[str, HumanVerdict]
) -> JudgeAgreement:
    """A judge against the human majority on the responses humans labelled."""
    keys = [k for k in human if k in judge_outcomes]
    return judge_vs_human([judge_outcomes[k] for k in keys], [human[k].aligned for k in keys])
