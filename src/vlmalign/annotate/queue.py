"""Which response an annotator sees next: a per-annotator shuffle, with optional overlap.

Every annotator gets the run's responses in their own order, shuffled with a seed recorded in
the store (so the order survives a restart and can be reported). With `overlap = K`, a response
is offered only until K annotators have labelled it; an annotator can always revisit their own.
With a budget, only a stratified sample of the responses is offered (`stratified_sample`).
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from vlmalign.hashing import stable_int
from vlmalign.judges.human import LabelIndex
from vlmalign.store import GenerationRow, LabelRow, RunStore

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
    rng = random.Random(stable_int(["annotate-sample", seed], 64))
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


class SharedStore:
    """The run store's one SQLite connection, shared by the server's worker threads.

    The app's endpoints that touch SQLite are plain `def` functions, which FastAPI runs in a
    thread pool so that a slow or locked store never blocks the event loop; this lock lets one
    thread at a time use the connection (opened with check_same_thread=False). The queue's
    in-memory label index is guarded by the same lock, so it always matches what was read.
    """

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._lock = threading.RLock()

    @contextmanager
    def use(self) -> Iterator[RunStore]:
        with self._lock:
            yield self._store


class AnnotationQueue:
    """The responses offered, and an index of their labels kept current incrementally.

    The index (`judges.human.LabelIndex`: who labelled each response, and each annotator's
    latest label of it) is read once at start, then brought up to date on every view by reading
    only the labels added since (`id > last id seen`, a primary-key range): a request costs the
    same with 50 or 50,000 labels in the store, and labels written by another process
    (`labels import`) still show up.
    """

    def __init__(
        self,
        store: RunStore | SharedStore,
        keys: list[str],
        overlap: int | None,
        seed: int | None = None,
    ) -> None:
        self.db = store if isinstance(store, SharedStore) else SharedStore(store)
        self.keys = list(dict.fromkeys(keys))
        self.key_set = set(self.keys)
        self.overlap = overlap
        self.seed = seed
        self._orders: dict[str, list[str]] = {}
        self._index = LabelIndex(keys=self.key_set)
        with self.db.use() as db:
            self._refresh(db)

    def _refresh(self, store: RunStore) -> None:
        """Apply the labels added since the last read (the caller holds the lock)."""
        self._index.add(store.labels(latest_only=False, after_id=self._index.last_id))

    def register(self, annotator: str) -> int:
        """Record the annotator's order seed (random, or derived from the app's --seed)."""
        fresh = (
            secrets.randbelow(2**31)
            if self.seed is None
            else stable_int([self.seed, annotator], 32)
        )
        with self.db.use() as store:
            return store.annotator_seed(annotator, fresh)

    def order(self, annotator: str) -> list[str]:
        with self.db.use():
            if annotator not in self._orders:  # computed once: a page view should not write
                keys = list(self.keys)
                random.Random(self.register(annotator)).shuffle(keys)
                self._orders[annotator] = keys
            return self._orders[annotator]

    def view(self, annotator: str) -> AnnotatorView:
        """The queue as this annotator sees it now (a snapshot, safe to use without the lock)."""
        with self.db.use() as store:
            self._refresh(store)
            order = self.order(annotator)
            mine = {key: row.id or 0 for key, row in self._index.labelled_by(annotator).items()}
            closed: frozenset[str] = frozenset()
            if self.overlap is not None:
                closed = self._index.covered_without(annotator, self.overlap)
        return AnnotatorView(self, annotator, order, closed, mine)

    def add_label(self, row: LabelRow, repeat_window: float = 0.0) -> bool:
        """Store a label, unless it repeats the annotator's latest label of that response
        (same label and note) within `repeat_window` seconds; True when stored."""
        with self.db.use() as store:
            stored = store.add_label_once(row, repeat_window)
            self._refresh(store)
        return stored

    def label(self, label_id: int) -> LabelRow | None:
        """One stored label by its id."""
        with self.db.use() as store:
            return store.label(label_id)


@dataclass(frozen=True)
class AnnotatorView:
    queue: AnnotationQueue
    annotator: str
    order: list[str]
    closed: frozenset[str]  # responses K others labelled (with --overlap), closed to this one
    mine: dict[str, int]  # response key -> id of this annotator's latest label of it

    @property
    def history(self) -> list[str]:
        """Responses this annotator labelled, in the order they first labelled them."""
        return list(self.mine)

    def _open(self, key: str) -> bool:
        """Still offered to this annotator: theirs already, or fewer than K labels so far."""
        return key not in self.closed

    def next_key(self) -> str | None:
        return next((k for k in self.order if k not in self.mine and self._open(k)), None)

    def progress(self) -> Progress:
        open_keys = [k for k in self.queue.keys if self._open(k)]
        return Progress(sum(1 for k in open_keys if k in self.mine), len(open_keys))

    def can_view(self, key: str) -> bool:
        return key in self.queue.key_set and self._open(key)
