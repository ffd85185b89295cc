"""Judge validity as a stage: judge reference answers (stored in a run, or live), measure judges.

`study` calls `judge_references` for every automatic judge, so a run's report can show, beside
each judge's numbers, how well that judge separates known-aligned from known-misaligned answers.
`vlmalign judges validate` calls `validate_judges` on any dataset and, optionally, a run's
human labels. The measures themselves live in `vlmalign.judges.validity`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from tqdm.auto import tqdm

from vlmalign.data.dataset import Dataset
from vlmalign.judges.base import Judge, JudgeInput, Verdict
from vlmalign.judges.registry import is_graded, judge_config_hash, judged_kinds
from vlmalign.judges.threshold import ThresholdedJudge
from vlmalign.judges.validity import (
    Reference,
    ValidityEntry,
    developed_on,
    for_kinds,
    heldout_entry,
    humans_validity,
    known_from_humans,
    known_from_references,
    reference_answers,
    references_validity,
)
from vlmalign.stats import Known
from vlmalign.store import ReferenceJudgmentRow, RunStore

log = logging.getLogger(__name__)
BATCH = 64


def judge_all(
    judge: Judge, inputs: Sequence[JudgeInput], desc: str, progress: bool = True
) -> list[Verdict]:
    """Verdicts of `judge` on `inputs`, in batches, with a progress bar."""
    verdicts: list[Verdict] = []
    with tqdm(total=len(inputs), desc=desc, unit="resp", disable=not progress) as bar:
        for start in range(0, len(inputs), BATCH):
            batch = inputs[start : start + BATCH]
            verdicts += judge.judge(batch)
            bar.update(len(batch))
    return verdicts


def judge_references(store: RunStore, judge: Judge, dataset: Dataset, progress: bool = True) -> int:
    """Judge the dataset's reference answers not yet judged by this judge configuration.

    A judge with `threshold: auto` is fit here: its inner judge scores the references, the cuts
    are fit on them (one on all, one per fold on the other folds), and its verdicts are those
    scores under each item's fold's cut (no second model pass).
    """
    if isinstance(judge, ThresholdedJudge):
        count = judge_references(store, judge.inner, dataset, progress)
        _fit_on_references(store, judge, dataset)
        return count
    config_hash = judge_config_hash(judge)
    done = store.reference_judgments(dataset.sha256, judge.name, config_hash)
    references = for_kinds(reference_answers(dataset.items), judged_kinds(judge.config()))
    todo = [r for r in references if (r.item_id, r.side) not in done]
    if not todo:
        return 0
    verdicts = judge_all(judge, [r.input for r in todo], f"validate {judge.name}", progress)
    store.add_reference_judgments(
        [
            ReferenceJudgmentRow.of(
                dataset.sha256, ref.item_id, ref.side, judge.name, config_hash, verdict
            )
            for ref, verdict in zip(todo, verdicts, strict=True)
        ]
    )
    return len(todo)


def _fit_on_references(store: RunStore, judge: ThresholdedJudge, dataset: Dataset) -> None:
    """Fit the cuts on the inner judge's stored reference scores, and store the references'
    verdicts under the fitted configuration: the same scores, each cut by its item's fold's cut
    (fit on the other folds), so these verdicts are the cross-validated ones."""
    inner = store.reference_judgments(dataset.sha256, judge.name, judge_config_hash(judge.inner))
    known = [
        Known(item_id, side == "ideal", row.aligned, row.score)
        for (item_id, side), row in inner.items()
    ]
    judge.fit(known, f"reference answers of dataset {dataset.sha256[:12]}")
    config_hash = judge_config_hash(judge)
    rows = []
    for (item_id, _), row in inner.items():
        verdict = judge.rethreshold(Verdict(aligned=row.aligned, score=row.score), item_id)
        rows.append(replace(row, judge_config_sha256=config_hash, aligned=verdict.aligned))
    store.add_reference_judgments(rows)


def references_entry(
    judge: Judge, references: Sequence[Reference], verdicts: Sequence[Verdict]
) -> ValidityEntry:
    """Validity on reference answers; for a judge whose cut is fit on these same answers
    (`threshold: auto`), from cross-validation over items instead."""
    known = known_from_references(references, verdicts)
    auto = isinstance(judge, ThresholdedJudge)
    return references_validity(judge.name, known, auto, is_graded(judge.config()))


def humans_entry(judge: Judge, run_dir: Path, progress: bool = True) -> ValidityEntry | None:
    """The judge against the human majority of a run's labelled responses (judged live)."""
    from vlmalign.judges.human import human_verdicts

    with RunStore(run_dir, read_only=True) as store:
        human = {k: v.aligned for k, v in human_verdicts(store.labels()).items()}
        generations = store.generations([k for k, v in human.items() if v is not None])
        items = {}
        for sha in {g.dataset_sha256 for g in generations}:
            items.update(store.items(sha))
    rows = [g for g in generations if g.item_id in items]
    if not rows:
        return None
    inputs = [JudgeInput.for_item(items[g.item_id], g.shots, g.response) for g in rows]
    verdicts = judge_all(judge, inputs, f"{judge.name} on labelled responses", progress)
    known = known_from_humans(
        {g.key: (v.aligned, v.score) for g, v in zip(rows, verdicts, strict=True)},
        human,
        {g.key: g.item_id for g in rows},
    )
    graded = is_graded(judge.config())
    return humans_validity(judge.name, known, graded)


def validate_judges(
    judges: Sequence[Judge],
    dataset: Dataset,
    run_dir: Path | None = None,
    progress: bool = True,
) -> list[ValidityEntry]:
    """Every judge on the dataset's reference answers, its own held-out data, and (with a run)
    the run's human labels."""
    references = reference_answers(dataset.items)
    entries: list[ValidityEntry] = []
    for judge in judges:
        scorer = judge.inner if isinstance(judge, ThresholdedJudge) else judge
        mine = for_kinds(references, judged_kinds(scorer.config()))
        verdicts = judge_all(scorer, [r.input for r in mine], judge.name, progress)
        if isinstance(judge, ThresholdedJudge):
            judge.fit(known_from_references(mine, verdicts), "reference answers")
            verdicts = [
                judge.rethreshold(v, r.item_id) for r, v in zip(mine, verdicts, strict=True)
            ]
        entry = references_entry(judge, mine, verdicts)
        if developed_on(judge.config(), dataset.sha256):
            entry = entry.model_copy(update={"optimistic": True})
        entries.append(entry)
        if run_dir is not None:
            human = humans_entry(judge, run_dir, progress)
            if human is not None:
                entries.append(human)
        heldout = heldout_entry(judge)
        if heldout is not None:
            entries.append(heldout)
    return entries
