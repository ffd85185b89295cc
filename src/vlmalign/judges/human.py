"""Human labels taken together: whose label counts, the majority, coverage and agreement.

The store keeps every label as it was given (`vlmalign.store.LabelRow`); this module decides
what they mean:
- an annotator's latest label of a response revises their earlier ones (`LabelIndex`);
- a response's human verdict is the majority of its annotators' latest labels. "unsure" is a
  vote like the others; a tie is shown as a tie, never broken by guessing; an unlabelled
  response has no human verdict at all (it is left out, not counted as anything);
- coverage is who labelled which response (the annotation app's `--overlap` closes a response
  once enough others labelled it), and agreement compares annotators with each other and a
  judge with the majority.

The statistics (kappa, alpha, majority) come from `vlmalign.stats`, imported only when a
figure is computed, so the annotation app can use the index without numpy and scipy.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vlmalign.store import LabelRow

if TYPE_CHECKING:
    from vlmalign.stats import JudgeAgreement

HUMAN = "human"


class LabelIndex:
    """Each annotator's latest label of each response, from labels given in the order they
    were made (stored labels in id order); more can be added as they arrive.

    With `keys`, labels of other responses are left out.
    """

    def __init__(
        self, labels: Iterable[LabelRow] = (), keys: Collection[str] | None = None
    ) -> None:
        self._keys = keys
        self.last_id = 0  # the highest stored label id seen
        self._by_response: dict[str, dict[str, LabelRow]] = defaultdict(dict)
        self._by_annotator: dict[str, dict[str, LabelRow]] = defaultdict(dict)
        self.add(labels)

    def add(self, labels: Iterable[LabelRow]) -> None:
        """Take in labels made after those already added (a later one revises)."""
        for row in labels:
            if row.id is not None:
                self.last_id = max(self.last_id, row.id)
            if self._keys is not None and row.generation_key not in self._keys:
                continue
            self._by_response[row.generation_key][row.annotator] = row
            # A revision keeps the response's place in the annotator's first-labelled order.
            self._by_annotator[row.annotator][row.generation_key] = row

    def latest(self) -> dict[str, dict[str, str]]:
        """Response key -> annotator -> their latest label."""
        return {
            key: {annotator: row.label for annotator, row in by_annotator.items()}
            for key, by_annotator in self._by_response.items()
        }

    def labelled_by(self, annotator: str) -> dict[str, LabelRow]:
        """Response key -> the annotator's latest label, in the order they first labelled."""
        return dict(self._by_annotator.get(annotator, {}))

    def covered_without(self, annotator: str, by: int) -> frozenset[str]:
        """Responses `annotator` did not label that at least `by` others labelled."""
        return frozenset(
            key
            for key, by_annotator in self._by_response.items()
            if len(by_annotator) >= by and annotator not in by_annotator
        )


def latest_labels(labels: Iterable[LabelRow]) -> dict[str, dict[str, str]]:
    """Response key -> annotator -> label, each annotator's latest label counting."""
    return LabelIndex(labels).latest()


@dataclass(frozen=True)
class HumanVerdict:
    status: str  # aligned | misaligned | unsure | tie
    votes: dict[str, int]
    annotators: int

    @property
    def aligned(self) -> bool | None:
        """True/False when the majority is aligned/misaligned; None for unsure or a tie."""
        return {"aligned": True, "misaligned": False}.get(self.status)


def human_verdicts(labels: Iterable[LabelRow]) -> dict[str, HumanVerdict]:
    """Per response key, the verdict of its annotators' latest labels."""
    from vlmalign.stats import majority_label

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
    from vlmalign.stats import cohen_kappa, krippendorff_alpha

    latest = latest_labels(labels)
    annotators = sorted({row.annotator for row in labels})
    keys = sorted(latest)
    # The reliability matrix: one row per annotator, one column per response (None: unlabelled).
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
    from vlmalign.stats import judge_vs_human

    keys = [k for k in human if k in judge_outcomes]
    return judge_vs_human([judge_outcomes[k] for k in keys], [human[k].aligned for k in keys])
