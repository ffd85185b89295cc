"""A label sent twice (a double click, a form resent) is one label; a revision is still stored.

The regression: two identical POSTs within a second stored two identical rows, which `store
check` then reported as a duplicate (exit 1).
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.annotate.conftest import serve
from vlmalign import cli
from vlmalign.annotate.app import REPEAT_WINDOW_S, create_app
from vlmalign.store import LabelRow, RunStore


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def key_of(html: str) -> str:
    match = re.search(r'action="/r/([0-9a-f]{64})"', html)
    assert match, html
    return match.group(1)


def store_check(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """`vlmalign store check RUN` in process: its exit code."""
    monkeypatch.setattr(sys, "argv", ["vlmalign", "store", "check", str(run_dir)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        raise SystemExit(0)
    return int(exit_info.value.code or 0)


def test_ten_concurrent_identical_submissions_store_one_label(
    run: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    app = create_app(run[0], seed=5)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as ana:
        page = ana.get("/")
        signed = ana.post("/login", data={"name": "ana", "csrf": csrf_of(page.text)})
        html = ana.get(signed.headers["location"], follow_redirects=True).text
        key, form = key_of(html), {"label": "aligned", "note": "ok", "csrf": csrf_of(html)}
        start = threading.Barrier(10)
        statuses: list[int] = []

        def click() -> None:  # each "click" its own connection, all sent at once
            with httpx.Client(base_url=url, cookies=ana.cookies, timeout=30) as client:
                start.wait(timeout=30)
                statuses.append(client.post(f"/r/{key}", data=form).status_code)

        clicks = [threading.Thread(target=click) for _ in range(10)]
        for thread in clicks:
            thread.start()
        for thread in clicks:
            thread.join(timeout=60)
        assert statuses == [303] * 10  # every click answered as a success: on to the next
        # A different label, or another note, is a revision.
        for label, note in (("misaligned", "ok"), ("misaligned", "on reflection")):
            again = ana.post(f"/r/{key}", data={**form, "label": label, "note": note})
            assert again.status_code == 303
    with RunStore(run[0]) as store:
        history = [(r.generation_key, r.label, r.note) for r in store.labels(latest_only=False)]
    assert history == [
        (key, "aligned", "ok"),
        (key, "misaligned", "ok"),
        (key, "misaligned", "on reflection"),
    ]
    capsys.readouterr()
    assert store_check(run[0], monkeypatch) == 0, capsys.readouterr().out


def label_at(key: str, label: str, at: str, note: str = "") -> LabelRow:
    return LabelRow(key, "ana", label, note, at)


def test_a_repeat_is_one_label_only_within_the_window(run: tuple[Path, list[str]]) -> None:
    key, other = run[1][0], run[1][1]
    window = REPEAT_WINDOW_S
    with RunStore(run[0]) as store:
        assert store.add_label_once(label_at(key, "aligned", "2026-01-01T10:00:00+00:00"), window)
        # The same label and note 10 s later: the same submission.
        assert not store.add_label_once(
            label_at(key, "aligned", "2026-01-01T10:00:10+00:00"), window
        )
        # Another note, another label, another response or another annotator: stored.
        assert store.add_label_once(
            label_at(key, "aligned", "2026-01-01T10:00:11+00:00", "on reflection"), window
        )
        assert store.add_label_once(label_at(key, "unsure", "2026-01-01T10:00:12+00:00"), window)
        assert store.add_label_once(label_at(other, "unsure", "2026-01-01T10:00:12+00:00"), window)
        assert store.add_label_once(
            LabelRow(key, "ben", "unsure", "", "2026-01-01T10:00:12+00:00"), window
        )
        # The same label after the window: a revision, kept in the history.
        assert store.add_label_once(label_at(key, "unsure", "2026-01-01T10:00:23+00:00"), window)
        # A stored time that is no ISO time (an old import) never makes a repeat.
        store.add_labels([label_at(other, "aligned", "yesterday")])
        assert store.add_label_once(label_at(other, "aligned", "2026-01-01T10:00:30Z"), window)
        mine = [(r.generation_key, r.label) for r in store.labels(False) if r.annotator == "ana"]
    assert mine == [
        (key, "aligned"),
        (key, "aligned"),
        (key, "unsure"),
        (other, "unsure"),
        (key, "unsure"),
        (other, "aligned"),
        (other, "aligned"),
    ]


def test_repeats_from_separate_connections_store_one_label(run: tuple[Path, list[str]]) -> None:
    """Like two processes writing one store: each its own SQLite connection, all at once; the
    check and the insert are one transaction, so exactly one of them stores the label."""
    key = run[1][0]
    stores = [RunStore(run[0], check_same_thread=False) for _ in range(8)]
    start = threading.Barrier(len(stores))
    results: list[bool | BaseException] = []

    def submit(store: RunStore) -> None:
        start.wait(timeout=30)
        try:
            results.append(
                store.add_label_once(label_at(key, "aligned", "2026-01-01T10:00:00Z"), 10)
            )
        except BaseException as exc:  # counted below
            results.append(exc)

    threads = [threading.Thread(target=submit, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    assert sorted(results, key=str) == [False] * 7 + [True]
    with RunStore(run[0]) as store:
        assert len(store.labels(latest_only=False)) == 1
