"""Judge validity of one run, from its store: reference answers, human labels, held-out data."""

from __future__ import annotations

from vlmalign.judges.human import HumanVerdict
from vlmalign.judges.registry import is_graded, judged_kinds
from vlmalign.judges.threshold import is_auto
from vlmalign.judges.validity import (
    ValidityEntry,
    developed_on,
    for_kinds,
    humans_validity,
    known_from_humans,
    reference_answers,
    references_validity,
)
from vlmalign.report.run_data import RunData
from vlmalign.stats import Known


def validity_entries(run: RunData, human: dict[str, HumanVerdict]) -> list[ValidityEntry]:
    """Every automatic judge of the run on each source it has data for."""
    references = reference_answers(run.reference_items.values())
    cluster_of = {g.key: g.item_id for g in run.generations}
    human_aligned = {key: verdict.aligned for key, verdict in human.items()}
    heldout = run.provenance.judge_heldout_validity
    entries = []
    for judge in run.judges:
        rows = run.references.get(judge, {})
        config = run.provenance.judges.get(judge) or {}
        known = [
            Known(ref.item_id, ref.expected, row.aligned, row.score)
            for ref in for_kinds(references, judged_kinds(config))
            if (row := rows.get((ref.item_id, ref.side))) is not None
        ]
        graded = is_graded(config)
        if known:
            entry = references_validity(judge, known, is_auto(config), graded)
            if developed_on(config, run.provenance.dataset_sha256):
                entry = entry.model_copy(update={"optimistic": True})
            entries.append(entry)
        if human_aligned:
            verdicts = {key: (row.aligned, row.score) for key, row in run.verdicts[judge].items()}
            by_humans = known_from_humans(verdicts, human_aligned, cluster_of)
            if by_humans:
                entries.append(humans_validity(judge, by_humans, graded))
        if judge in heldout:
            entries.append(heldout[judge].model_copy(update={"judge": judge}))
    return entries
