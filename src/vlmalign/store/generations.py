"""Responses and the verdicts on them: the `generations`, `judgments` and
`reference_judgments` tables.

A generation is keyed by a hash of everything that determines it (`generation_key`), so a rerun
skips finished rows; a verdict is keyed by the judge's identity and configuration hash, so a
changed judge judges again. Each batch is written in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vlmalign.hashing import stable_hash
from vlmalign.store.connection import StoreConnection, insert_sql, mapped, now


def generation_key(
    *,
    model_fingerprint: str,
    adapter_hash: str | None,
    image_sha256: str,
    prompt: str,
    sampling: dict[str, Any],
    seed: int,
    sample_index: int,
) -> str:
    """What determines a response; not the dataset, item id or batch, so identical requests
    share one row."""
    return stable_hash(
        {
            "model": model_fingerprint,
            "adapter": adapter_hash,
            "image": image_sha256,
            "prompt": prompt,
            "sampling": sampling,
            "seed": seed,
            "sample": sample_index,
        }
    )


@dataclass(frozen=True)
class GenerationRow:
    key: str
    variant: str
    model: str
    model_fingerprint: str
    adapter_hash: str | None
    dataset_sha256: str
    item_id: str
    split: str
    shots: int
    sample_index: int
    seed: int
    image_sha256: str
    prompt: str
    sampling: str
    response: str
    # What a remote endpoint reports (None from in-process models): models/base.Generated.
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    served_by: str | None = None
    system_fingerprint: str | None = None
    refused: bool = False


GENERATION_COLUMNS = tuple(GenerationRow.__dataclass_fields__)


class VerdictLike(Protocol):
    """What a judge returns (`judges.base.Verdict`), as far as the store keeps it."""

    @property
    def aligned(self) -> bool | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def answer(self) -> str | None: ...
    @property
    def explanation(self) -> str | None: ...
    @property
    def detail(self) -> dict[str, Any]: ...


# A row class lists what was judged first, then these verdict fields (`StoredVerdict` is its
# last base class, so dataclass puts its fields last and rows keep their positional order).
@dataclass(frozen=True)
class StoredVerdict:
    """A judge's verdict as stored: aligned (None = unclear), P(aligned), what the judge read,
    one sentence why, and the judge's own working."""

    aligned: bool | None
    score: float | None
    detail: dict[str, Any]
    answer: str | None = None
    explanation: str | None = None


VERDICT_COLUMNS = ("aligned", "score", "detail", "answer", "explanation")


def _verdict_params(verdict: StoredVerdict) -> dict[str, Any]:
    """A verdict's columns: aligned as 0/1/NULL, the detail as sorted JSON."""
    return {
        "aligned": None if verdict.aligned is None else int(verdict.aligned),
        "score": verdict.score,
        "detail": json.dumps(verdict.detail, sort_keys=True),
        "answer": verdict.answer,
        "explanation": verdict.explanation,
    }


def _verdict_fields(row: sqlite3.Row) -> dict[str, Any]:
    """A stored verdict read back (the inverse of `_verdict_params`)."""
    return {
        "aligned": None if row["aligned"] is None else bool(row["aligned"]),
        "score": row["score"],
        "detail": json.loads(row["detail"]),
        "answer": row["answer"],
        "explanation": row["explanation"],
    }


def _verdict_values(verdict: VerdictLike) -> dict[str, Any]:
    return {
        "aligned": verdict.aligned,
        "score": verdict.score,
        "detail": dict(verdict.detail),
        "answer": verdict.answer,
        "explanation": verdict.explanation,
    }


@dataclass(frozen=True)
class _JudgedResponse:
    generation_key: str
    judge: str  # the judge's identity
    judge_config_sha256: str


@dataclass(frozen=True)
class JudgmentRow(StoredVerdict, _JudgedResponse):
    """A judge's verdict on one stored response."""

    @classmethod
    def of(
        cls, generation_key: str, judge: str, config_sha256: str, verdict: VerdictLike
    ) -> JudgmentRow:
        return cls(generation_key, judge, config_sha256, **_verdict_values(verdict))


@dataclass(frozen=True)
class _JudgedReference:
    dataset_sha256: str
    item_id: str
    side: str  # ideal | misaligned
    judge: str
    judge_config_sha256: str


@dataclass(frozen=True)
class ReferenceJudgmentRow(StoredVerdict, _JudgedReference):
    """A judge's verdict on one reference answer of an item (judge validity)."""

    @classmethod
    def of(
        cls,
        dataset_sha256: str,
        item_id: str,
        side: str,
        judge: str,
        config_sha256: str,
        verdict: VerdictLike,
    ) -> ReferenceJudgmentRow:
        return cls(dataset_sha256, item_id, side, judge, config_sha256, **_verdict_values(verdict))


_JUDGMENT_KEY = tuple(_JudgedResponse.__dataclass_fields__)
_REFERENCE_KEY = tuple(_JudgedReference.__dataclass_fields__)


class GenerationTables:
    """Stored responses, and judges' verdicts on them and on the reference answers."""

    def __init__(self, db: StoreConnection) -> None:
        self.db = db

    # --- generations ----------------------------------------------------------------------
    @mapped
    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        rows = self.db.rows_in("SELECT key FROM generations WHERE key IN", {}, keys)
        return {r["key"] for r in rows}

    @mapped
    def add_generations(self, rows: Sequence[GenerationRow]) -> None:
        """Store responses (a key stored already keeps its first response)."""
        stamp = now()
        sql = insert_sql("generations", (*GENERATION_COLUMNS, "created_at"), "INSERT OR IGNORE")
        with self.db.transaction() as conn:
            conn.executemany(sql, [{**vars(r), "created_at": stamp} for r in rows])

    @mapped
    def generations(self, keys: Sequence[str]) -> list[GenerationRow]:
        """Rows for these keys, in the given order (missing keys are skipped)."""
        sql = f"SELECT {', '.join(GENERATION_COLUMNS)} FROM generations WHERE key IN"
        by_key = {
            row["key"]: GenerationRow(
                **{**{c: row[c] for c in GENERATION_COLUMNS}, "refused": bool(row["refused"])}
            )
            for row in self.db.rows_in(sql, {}, keys)
        }
        return [by_key[k] for k in keys if k in by_key]

    @mapped
    def all_generation_keys(self) -> list[str]:
        rows = self.db.conn.execute("SELECT key FROM generations ORDER BY rowid")
        return [r["key"] for r in rows]

    # --- judgments ------------------------------------------------------------------------
    @mapped
    def add_judgments(self, rows: Sequence[JudgmentRow]) -> None:
        """Store verdicts (a verdict of the same judge configuration is replaced)."""
        stamp = now()
        sql = insert_sql(
            "judgments", (*_JUDGMENT_KEY, *VERDICT_COLUMNS, "created_at"), "INSERT OR REPLACE"
        )
        params = [
            {**{c: getattr(r, c) for c in _JUDGMENT_KEY}, **_verdict_params(r), "created_at": stamp}
            for r in rows
        ]
        with self.db.transaction() as conn:
            conn.executemany(sql, params)

    @mapped
    def judgments(
        self, judge: str, config_sha256: str, keys: Sequence[str]
    ) -> dict[str, JudgmentRow]:
        """Generation key -> this judge configuration's verdict, for the keys it judged."""
        sql = (
            "SELECT * FROM judgments WHERE judge = :judge AND judge_config_sha256 = :config "
            "AND generation_key IN"
        )
        found: dict[str, JudgmentRow] = {}
        for row in self.db.rows_in(sql, {"judge": judge, "config": config_sha256}, keys):
            found[row["generation_key"]] = JudgmentRow(
                row["generation_key"], judge, config_sha256, **_verdict_fields(row)
            )
        return found

    def judged_keys(self, judge: str, config_sha256: str, keys: Sequence[str]) -> set[str]:
        return set(self.judgments(judge, config_sha256, keys))

    # --- reference answers (judge validity) ----------------------------------------------
    @mapped
    def add_reference_judgments(self, rows: Sequence[ReferenceJudgmentRow]) -> None:
        stamp = now()
        sql = insert_sql(
            "reference_judgments",
            (*_REFERENCE_KEY, *VERDICT_COLUMNS, "created_at"),
            "INSERT OR REPLACE",
        )
        params = [
            {
                **{c: getattr(r, c) for c in _REFERENCE_KEY},
                **_verdict_params(r),
                "created_at": stamp,
            }
            for r in rows
        ]
        with self.db.transaction() as conn:
            conn.executemany(sql, params)

    @mapped
    def reference_judgments(
        self, dataset_sha256: str, judge: str, config_sha256: str
    ) -> dict[tuple[str, str], ReferenceJudgmentRow]:
        """(item id, side) -> verdict of this judge configuration on that reference answer."""
        rows = self.db.conn.execute(
            "SELECT * FROM reference_judgments WHERE dataset_sha256 = :dataset "
            "AND judge = :judge AND judge_config_sha256 = :config",
            {"dataset": dataset_sha256, "judge": judge, "config": config_sha256},
        )
        return {
            (r["item_id"], r["side"]): ReferenceJudgmentRow(
                dataset_sha256, r["item_id"], r["side"], judge, config_sha256, **_verdict_fields(r)
            )
            for r in rows
        }
