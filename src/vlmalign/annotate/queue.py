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

from vlmalign.store import RunStore, stable_hash


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

    def _labellers(self) -> dict[str, set[str]]:
        by_key: dict[str, set[str]] = defaultdict(set)
        for row in self.store.labels(latest_only=True):
            if row.generation_key in self.key_set:
                by_key[row.generation_key].add(row.annotator)
        return by_key

    def _open(self, key: str, annotator: str, labellers: dict[str, set[str]]) -> bool:
        """Still offered to this annotator: theirs already, or fewer than K labels so far."""
        others = labellers.get(key, set())
        return annotator in others or self.overlap is None or len(others) < self.overlap

    def history(self, annotator: str) -> list[str]:
        """Responses this annotator labelled, in the order they first labelled them."""
        seen = dict.fromkeys(
            r.generation_key
            for r in self.store.labels(latest_only=False)
            if r.annotator == annotator and r.generation_key in self.key_set
        )
        return list(seen)

    def next_key(self, annotator: str) -> str | None:
        labellers = self._labellers()
        for key in self.order(annotator):
            if annotator not in labellers.get(key, set()) and self._open(key, annotator, labellers):
                return key
        return None

    def progress(self, annotator: str) -> Progress:
        labellers = self._labellers()
        open_keys = [k for k in self.keys if self._open(k, annotator, labellers)]
        done = sum(1 for k in open_keys if annotator in labellers.get(k, set()))
        return Progress(done, len(open_keys))

    def can_view(self, annotator: str, key: str) -> bool:
        return key in self.key_set and self._open(key, annotator, self._labellers())
