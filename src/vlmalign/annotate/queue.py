"""Which response an annotator sees next: a per-annotator shuffle, with optional overlap.

Every annotator gets the run's responses in their own order, shuffled with a seed recorded in
the store (so the order survives a restart and can be reported). With `overlap = K`, a response
is offered only until K annotators have labelled it; an annotator can always revisit their own.
"""

from __future__ import annotations

import random
import secrets
from collections import defaultdict
from dataclasses import dataclass

from vlmalign.store import LabelRow, RunStore, stable_hash


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
