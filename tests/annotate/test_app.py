"""The annotation app through its HTTP interface (FastAPI's test client, no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.annotate.conftest import local_client
from vlmalign.annotate.app import create_app
from vlmalign.store import RunStore


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, name: str = "ana", token: str = "") -> str:
    page = client.get("/")
    response = client.post(
        "/login", data={"name": name, "csrf": csrf_of(page.text), "token": token}
    )
    assert response.status_code == 200, response.text  # followed to the first response
    return response.text


def current_key(html: str) -> str:
    match = re.search(r'action="/r/([0-9a-f]{64})"', html)
    assert match
    return match.group(1)


@pytest.fixture
def client(run: tuple[Path, list[str]]) -> TestClient:
    return local_client(create_app(run[0], seed=7))


def test_sign_in_label_and_finish(client: TestClient, run: tuple[Path, list[str]]) -> None:
    html = sign_in(client)
    seen = []
    for _ in range(len(run[1])):
        assert f"{len(seen)} / {len(run[1])} labelled" in html
        key = current_key(html)
        seen.append(key)
        html = client.post(f"/r/{key}", data={"label": "aligned", "csrf": csrf_of(html)}).text
    assert "All done" in html
    assert sorted(seen) == sorted(run[1])
    with RunStore(run[0]) as store:
        assert {(r.generation_key, r.annotator, r.label) for r in store.labels()} == {
            (k, "ana", "aligned") for k in run[1]
        }


def test_order_is_shuffled_per_annotator_and_recorded(run: tuple[Path, list[str]]) -> None:
    orders = []
    for name in ("ana", "ben", "cy", "dee"):
        client = local_client(create_app(run[0]))
        orders.append(current_key(sign_in(client, name)))
        again = local_client(create_app(run[0]))  # a restart keeps the annotator's order
        assert current_key(sign_in(again, name)) == orders[-1]
    with RunStore(run[0]) as store:
        seeds = store.conn.execute("SELECT name, order_seed FROM annotators").fetchall()
    assert len(seeds) == 4
    assert len({s["order_seed"] for s in seeds}) == 4


def test_responses_are_escaped_and_model_hidden(client: TestClient) -> None:
    html = sign_in(client)
    while "window.__pwned" not in html:  # label until the payload comes up
        html = client.post(
            f"/r/{current_key(html)}", data={"label": "unsure", "csrf": csrf_of(html)}
        ).text
    assert "<script>window.__pwned" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html
    assert "mini" not in html and "0-shot" not in html  # model and condition stay hidden
    response = client.get("/next", follow_redirects=True)
    assert "script-src 'self'" in response.headers["content-security-policy"]


def test_post_without_csrf_is_refused(client: TestClient, run: tuple[Path, list[str]]) -> None:
    page = client.get("/")
    assert client.post("/login", data={"name": "ana"}).status_code == 403
    html = client.post("/login", data={"name": "ana", "csrf": csrf_of(page.text)}).text
    key = current_key(html)
    assert client.post(f"/r/{key}", data={"label": "aligned"}).status_code == 403
    assert client.post(f"/r/{key}", data={"label": "aligned", "csrf": "forged"}).status_code == 403
    with RunStore(run[0]) as store:
        assert store.labels() == []


def test_bad_label_is_422(client: TestClient, run: tuple[Path, list[str]]) -> None:
    html = sign_in(client)
    key, csrf = current_key(html), csrf_of(html)
    for bad in ("yes", "", "ALIGNED", "aligned "):
        assert client.post(f"/r/{key}", data={"label": bad, "csrf": csrf}).status_code == 422
    long_note = {"label": "aligned", "note": "x" * 5000, "csrf": csrf}
    assert client.post(f"/r/{key}", data=long_note).status_code == 422
    with RunStore(run[0]) as store:
        assert store.labels() == []


@pytest.mark.parametrize(
    "path",
    [
        "/image/../../../etc/passwd",
        "/image/..%2F..%2F..%2Fetc%2Fpasswd",
        "/image/%2Fetc%2Fpasswd",
        "/image//etc/passwd",
        "/image/pkg:skimage/data/astronaut.png",
        "/image/C:%5Cwindows%5Cwin.ini",
        "/image/no-such-item",
    ],
)
def test_image_route_only_serves_item_ids(client: TestClient, path: str) -> None:
    sign_in(client)
    assert client.get(path).status_code == 404


def test_image_by_item_id(client: TestClient) -> None:
    html = sign_in(client)
    src = re.search(r'<img src="(/image/[^"]+)"', html)
    assert src
    response = client.get(src.group(1))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert local_client(client.app).get(src.group(1)).status_code == 403  # not signed in


def test_unknown_or_malformed_response_key_is_404(client: TestClient) -> None:
    sign_in(client)
    assert client.get("/r/" + "0" * 64).status_code == 404
    assert client.get("/r/..%2F..%2Fetc").status_code == 404


def test_token_is_required_when_set(run: tuple[Path, list[str]]) -> None:
    client = local_client(create_app(run[0], token="correct-horse-battery"))
    page = client.get("/")
    assert 'name="token"' in page.text
    wrong = client.post("/login", data={"name": "ana", "token": "nope", "csrf": csrf_of(page.text)})
    assert wrong.status_code == 403
    assert client.get("/next", follow_redirects=False).status_code == 303  # still signed out
    assert "Answer" in sign_in(client, token="correct-horse-battery")


def test_revise_keeps_history_and_latest_counts(
    client: TestClient, run: tuple[Path, list[str]]
) -> None:
    html = sign_in(client)
    first = current_key(html)
    html = client.post(f"/r/{first}", data={"label": "aligned", "csrf": csrf_of(html)}).text
    assert f'href="/r/{first}"' in html  # back link to the labelled response
    html = client.get(f"/r/{first}").text
    assert "You labelled this" in html
    client.post(
        f"/r/{first}", data={"label": "misaligned", "note": "misread", "csrf": csrf_of(html)}
    )
    with RunStore(run[0]) as store:
        assert [r.label for r in store.labels(latest_only=False)] == ["aligned", "misaligned"]
        latest = store.labels()
    assert [(r.label, r.note) for r in latest] == [("misaligned", "misread")]


def test_overlap_offers_each_response_until_k_labelled(run: tuple[Path, list[str]]) -> None:
    app = create_app(run[0], overlap=2, seed=1)
    totals = []
    for name in ("ana", "ben", "cy"):
        client = local_client(app)
        html = sign_in(client, name)
        count = 0
        while "All done" not in html:
            html = client.post(
                f"/r/{current_key(html)}", data={"label": "aligned", "csrf": csrf_of(html)}
            ).text
            count += 1
        totals.append(count)
    assert totals == [5, 5, 0]  # two annotators cover K=2; the third is offered nothing
    with RunStore(run[0]) as store:
        per_key = [r.generation_key for r in store.labels()]
    assert sorted(per_key) == sorted(run[1] * 2)


def test_refusals_come_in_a_fixed_order(client: TestClient, run: tuple[Path, list[str]]) -> None:
    key = run[1][0]
    anonymous = local_client(client.app)
    assert anonymous.post(f"/r/{key}", data={"label": "bogus"}).status_code == 403  # no CSRF
    page = anonymous.get("/")
    signed_out = {"label": "aligned", "csrf": csrf_of(page.text)}
    assert anonymous.post(f"/r/{key}", data=signed_out).status_code == 403  # not signed in
    html = sign_in(client)
    unknown = "f" * 64
    bad = {"label": "bogus", "csrf": csrf_of(html)}
    assert client.post(f"/r/{unknown}", data=bad).status_code == 422  # label before key
    good = {"label": "aligned", "csrf": csrf_of(html)}
    assert client.post(f"/r/{unknown}", data=good).status_code == 404
    with RunStore(run[0]) as store:
        assert store.labels() == []
