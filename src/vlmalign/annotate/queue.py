"""Which response an annotator sees next: a per-annotator shuffle, with optional overlap.

Every annotator gets the run's responses in their own order, shuffled with a seed recorded in
the store (so the order survives a restart and can be reported). With `overlap = K`, a response
is offered only until K annotators have labelled it; an annotator can always revisit their own.
With a budget, only a stratified sample of the responses is offered (`stratified_sample`).
"""

from __future__ import annotations

import random
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from vlmalign.store import GenerationRow, LabelRow, RunStore, stable_hash

SAMPLE_SEED = 0  # the --budget sample's seed when --seed is not given


def stratified_sample(rows: Sequence[GenerationRow], budget: int, seed: int) -> list[str]:
    """The keys of `budget` responses spread evenly over conditions, then over items.

    A condition is (model variant, split, shots). Responses are taken round by round: each
    round takes one more response from every condition that has one left, conditions in a
    seeded order; within a condition the responses come round-robin over its items (items in
    one seeded order shared by all conditions, each item's responses shuffled), so no
    item/condition gives a second response before every other item of that condition gave one.
    So the conditions' counts differ by at most one (unless a condition runs out, its share then
    going to the others), likewise the items' counts within a condition, and conditions with the
    same items sample the same ones first.

    The result depends only on the set of responses, `budget` and `seed` (not on the rows'
    order, nor on any annotator), and a larger budget extends a smaller one's sample. All keys
    come back when `budget` >= the number of responses.
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")
    unique = {row.key: row for row in rows}
    rng = random.Random(int(stable_hash(["annotate-sample", seed])[:16], 16))
    by_condition: dict[tuple[str, str, int], dict[str, list[str]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in sorted(unique.values(), key=lambda r: (r.item_id, r.key)):
        by_condition[(row.variant, row.split, row.shots)][row.item_id].append(row.key)
    # One item order for every condition: conditions' samples share items where they can, so
    # the paired comparisons of conditions on the same items have human labels on both sides.
    item_order = sorted({row.item_id for row in unique.values()})
    rng.shuffle(item_order)
    rank = {item: position for position, item in enumerate(item_order)}
    per_condition = []
    for condition in sorted(by_condition):
        items = by_condition[condition]
        order = sorted(items, key=rank.__getitem__)
        for item in order:
            rng.shuffle(items[item])
        per_condition.append(_round_robin([items[item] for item in order]))
    rng.shuffle(per_condition)
    return _round_robin(per_condition)[:budget]


def _round_robin(lists: Sequence[list[str]]) -> list[str]:
    """The first entry of every list, then every second entry, and so on."""
    depth = max((len(entries) for entries in lists), default=0)
    return [entries[i] for i in range(depth) for entries in lists if i < len(entries)]


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


class AnnotationQueue:
    def __init__(
        self, store: RunStore, keys: list[str], overlap: int | None, seed: int | None = None
    ) -> None:
        self.store = store
        self.keys = list(dict.fromkeys(keys))
        self.key_set = set(self.keys)
        self.overlap = overlap
        self.seed = seed
        self._orders: dict[str, list[str]] = {}

    def register(self, annotator: str) -> int:
        """Record the annotator's order seed (random, or derived from the app's --seed)."""
        fresh = (
            secrets.randbelow(2**31)
            if self.seed is None
            else int(stable_hash([self.seed, annotator])[:8], 16)
        )
        return self.store.annotator_seed(annotator, fresh)

    def order(self, annotator: str) -> list[str]:
        if annotator not in self._orders:  # computed once: a page view should not write
            keys = list(self.keys)
            random.Random(self.register(annotator)).shuffle(keys)
            self._orders[annotator] = keys
        return self._orders[annotator]

    def view(self, annotator: str) -> AnnotatorView:
        """The queue as this annotator sees it now, from one read of the labels."""
        labellers: dict[str, set[str]] = defaultdict(set)
        mine: dict[str, LabelRow] = {}  # first-labelled order, latest label as the value
        for row in self.store.labels(latest_only=False):
            if row.generation_key not in self.key_set:
                continue
            labellers[row.generation_key].add(row.annotator)
            if row.annotator == annotator:
                mine[row.generation_key] = row
        return AnnotatorView(self, annotator, self.order(annotator), labellers, mine)


@dataclass(frozen=True)
class AnnotatorView:
    queue: AnnotationQueue
    annotator: str
    order: list[str]
    labellers: dict[str, set[str]]  # response key -> annotators who labelled it
    mine: dict[str, LabelRow]  # this annotator's latest label per response

    @property
    def history(self) -> list[str]:
        """Responses this annotator labelled, in the order they first labelled them."""
        return list(self.mine)

    def _open(self, key: str) -> bool:
        """Still offered to this annotator: theirs already, or fewer than K labels so far."""
        others = self.labellers.get(key, set())
        overlap = self.queue.overlap
        return self.annotator in others or overlap is None or len(others) < overlap

    def next_key(self) -> str | None:
        return next((k for k in self.order if k not in self.mine and self._open(k)), None)

    def progress(self) -> Progress:
        open_keys = [k for k in self.queue.keys if self._open(k)]
        return Progress(sum(1 for k in open_keys if k in self.mine), len(open_keys))

    def can_view(self, key: str) -> bool:
        return key in self.queue.key_set and self._open(key)
