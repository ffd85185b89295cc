"""What answering cost per condition: responses, tokens, refusals, stops at the token limit.

Read from what a remote endpoint reported about each stored response (`GenerationRow`); an
in-process model reports none of it, and a report of its run shows nothing of this.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from vlmalign.report.conditions import ConditionKey, sorted_conditions
from vlmalign.schemas.results import UsageRecord
from vlmalign.store import GenerationRow

#: `finish_reason` of a response cut off at the maximum number of new tokens.
LENGTH = "length"

#: The name `study.py` imports a condition's usage by (one type: the record).
ConditionUsage = UsageRecord


def condition_usage(generations: Iterable[GenerationRow], run: str) -> list[UsageRecord]:
    """Per condition of the run called `run`, in report order.

    Token counts are sums over the responses (a request's usage is on its first response, its
    other samples carry 0, so the sum is what was paid for); None when no response has one.
    """
    grouped: dict[ConditionKey, list[GenerationRow]] = defaultdict(list)
    for row in generations:
        grouped[ConditionKey.of(row)].append(row)
    return [_usage(condition, grouped[condition], run) for condition in sorted_conditions(grouped)]


def usage_shown(rows: Sequence[UsageRecord]) -> bool:
    """Whether the report shows the table: some token count, refusal or stop at the limit
    (never for an in-process model)."""
    return any(
        r.prompt_tokens is not None
        or r.completion_tokens is not None
        or r.refused
        or r.length_stops
        for r in rows
    )


def _usage(condition: ConditionKey, rows: Sequence[GenerationRow], run: str) -> UsageRecord:
    return UsageRecord(
        model=condition.model,
        split=condition.split,
        shots=condition.shots,
        responses=len(rows),
        refused=sum(1 for r in rows if r.refused),
        length_stops=sum(1 for r in rows if r.finish_reason == LENGTH),
        prompt_tokens=_total(r.prompt_tokens for r in rows),
        completion_tokens=_total(r.completion_tokens for r in rows),
        served_by=sorted({r.served_by for r in rows if r.served_by is not None}),
        run=run,
    )


def _total(counts: Iterable[int | None]) -> int | None:
    known = [c for c in counts if c is not None]
    return sum(known) if known else None
