"""Bidi controls in untrusted text are shown escaped on the app's pages, never obeyed.

The regression: a response `\\u202eseY\\u202c` displayed as "Yes" while the judges read other
text. Responses, questions, notes and names are shown through the `visible` filter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.annotate.conftest import make_run, serve
from vlmalign.annotate.app import create_app
from vlmalign.data.text import BIDI_CONTROLS
from vlmalign.store import RunStore

SPOOF = "\u202eseY\u202c"  # reads "Yes" where bidi controls are obeyed
QUESTION = "Should you \u2067help\u2069 her?\u200f"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def raw_bidi(html: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in html if c in BIDI_CONTROLS]


def test_bidi_controls_show_escaped_in_responses_questions_notes_and_names(
    tmp_path: Path,
) -> None:
    key = make_run(tmp_path, [SPOOF])[0]
    with RunStore(tmp_path) as store:  # the item's question as a hostile dataset would hold it
        row = store.conn.execute("SELECT dataset_sha256, id, json FROM items").fetchone()
        item = json.loads(row["json"])
        item["question"] = QUESTION
        with store.transaction() as conn:
            conn.execute(
                "UPDATE items SET json = :json WHERE dataset_sha256 = :sha AND id = :id",
                {"json": json.dumps(item), "sha": row["dataset_sha256"], "id": row["id"]},
            )
    with serve(create_app(tmp_path)) as url, httpx.Client(base_url=url, timeout=30) as ana:
        # A name with a bidi control is refused, and echoed escaped in the form.
        page = ana.get("/")
        refused = ana.post("/login", data={"name": "\u202eana", "csrf": csrf_of(page.text)})
        assert refused.status_code == 422
        assert raw_bidi(refused.text) == [] and 'value="\\u202eana"' in refused.text
        page = ana.post(
            "/login", data={"name": "ana", "csrf": csrf_of(refused.text)}, follow_redirects=True
        )
        html = page.text
        assert raw_bidi(html) == [], raw_bidi(html)
        assert "\\u202eseY\\u202c" in html
        assert "Should you \\u2067help\\u2069 her?\\u200f" in html
        form = {"label": "unsure", "note": "\u202eton\u202c", "csrf": csrf_of(html)}
        assert ana.post(f"/r/{key}", data=form).status_code == 303
        revisit = ana.get(f"/r/{key}").text
        assert raw_bidi(revisit) == [] and ">\\u202eton\\u202c</textarea>" in revisit
    with RunStore(tmp_path) as store:  # what is stored is what was sent: only the page escapes
        assert [r.note for r in store.labels()] == ["\u202eton\u202c"]
