"""Everything a report needs, read back from a run's store (so reports can always be rebuilt)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vlmalign.data.schema import Item
from vlmalign.errors import VlmalignError
from vlmalign.judges.registry import judge_config_hash
from vlmalign.schemas.provenance import Provenance
from vlmalign.store import (
    STORE_FILE,
    GenerationRow,
    JudgmentRow,
    LabelRow,
    ReferenceJudgmentRow,
    RunStore,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """The newest finished study run of a directory: responses, verdicts, human labels."""

    run_dir: Path
    provenance: Provenance
    generations: tuple[GenerationRow, ...]
    items: dict[str, Item]
    verdicts: dict[str, dict[str, JudgmentRow]]  # judge name -> generation key -> verdict
    labels: tuple[LabelRow, ...]  # each annotator's latest label of the run's responses
    epoch_losses: tuple[dict[str, Any], ...] = ()
    # judge name -> (item id, side) -> verdict on the dataset's reference answers
    references: dict[str, dict[tuple[str, str], ReferenceJudgmentRow]] = field(default_factory=dict)
    reference_items: dict[str, Item] = field(default_factory=dict)  # the dataset's items
    # (id, started_at) of newer study runs that never finished (killed, failed or running)
    unfinished_after: tuple[tuple[int, str], ...] = ()

    @property
    def judges(self) -> list[str]:
        return list(self.verdicts)

    def judges_of_kind(self, kind: str) -> list[str]:
        """The identities of the run's judges of one kind (`stance`, `vlm`), whatever their
        labels, as their recorded configs name it (a config without a name: as its identity
        does, `vlm:mini` being a `vlm`)."""
        configs = self.provenance.judges
        return [
            j for j in self.judges if (configs.get(j, {}).get("name") or j.split(":")[0]) == kind
        ]

    @property
    def name(self) -> str:
        return self.run_dir.name or str(self.run_dir)


def load_run(run_dir: Path) -> RunData:
    if not (run_dir / STORE_FILE).is_file():
        raise VlmalignError(f"{run_dir}: no {STORE_FILE} here; run `vlmalign study` first")
    with RunStore(run_dir, read_only=True) as store:  # never writes: works on read-only runs
        latest = store.latest_run()
        if latest is None:
            unfinished = store.unfinished_runs()
            hint = (
                f" (run {unfinished[-1][0]}, started {unfinished[-1][1]}, did not finish: rerun "
                "the study to finish it)"
                if unfinished
                else ""
            )
            raise VlmalignError(f"{run_dir}: no finished study run in {STORE_FILE}{hint}")
        run_id, stored = latest
        provenance = _provenance(run_dir, run_id, stored)
        unfinished_after = tuple(store.unfinished_runs(after=run_id))
        if unfinished_after:
            newest, started = unfinished_after[-1]
            log.warning(
                "%s: a newer study run (%d, started %s) did not finish; this report shows the "
                "last finished run (%d). Rerun the study to finish it.",
                run_dir,
                newest,
                started,
                run_id,
            )
        keys = store.run_generation_keys(run_id) or store.all_generation_keys()
        generations = store.generations(keys)
        items: dict[str, Item] = {}
        for sha in {g.dataset_sha256 for g in generations}:
            items.update(store.items(sha))
        # Verdicts of the judge configurations this run used (a changed judge is another one).
        verdicts = {
            name: store.judgments(name, judge_config_hash(config), keys)
            for name, config in provenance.judges.items()
        }
        wanted = set(keys)
        labels = tuple(r for r in store.labels() if r.generation_key in wanted)
        dataset_sha = provenance.dataset_sha256 or ""
        reference_items = store.items(dataset_sha) if dataset_sha else {}
        references = {
            name: store.reference_judgments(dataset_sha, name, judge_config_hash(config))
            for name, config in provenance.judges.items()
        }
    adapter = provenance.finetuned_adapter
    return RunData(
        run_dir,
        provenance,
        tuple(generations),
        items,
        verdicts,
        labels,
        tuple(e.model_dump() for e in adapter.epoch_losses) if adapter else (),
        {name: rows for name, rows in references.items() if rows},
        reference_items,
        unfinished_after,
    )


def _provenance(run_dir: Path, run_id: int, stored: dict[str, Any]) -> Provenance:
    """The run's recorded provenance, checked (runs recorded before a field existed lack it)."""
    try:
        return Provenance.model_validate(stored)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "provenance"
        raise VlmalignError(
            f"{run_dir}: study run {run_id} has unreadable provenance ({where}: {first['msg']}); "
            "was it recorded by a newer vlmalign?"
        ) from exc
