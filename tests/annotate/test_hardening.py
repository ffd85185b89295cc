"""The annotation app against hostile or heavy traffic: sessions, Host names, sign-in rate,
tokens, body sizes, a locked store, and work per request that does not grow with the labels."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.annotate.conftest import local_client, local_client_at, run_cli, serve
from vlmalign.annotate.app import create_app
from vlmalign.annotate.security import MAX_BODY, RateLimit
from vlmalign.store import LabelRow, RunStore

TOKEN = "correct-horse-battery-staple"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def key_of(html: str) -> str:
    match = re.search(r'action="/r/([0-9a-f]{64})"', html)
    assert match, html
    return match.group(1)


def sign_in(client: TestClient, name: str, token: str = "") -> str:
    page = client.get("/")
    response = client.post(
        "/login", data={"name": name, "csrf": csrf_of(page.text), "token": token}
    )
    assert response.status_code == 200, response.text
    return response.text


def signed_in(client: TestClient) -> bool:
    return client.get("/next", follow_redirects=False).headers["location"] != "/"


# --- B6: sessions ------------------------------------------------------------------------------
def test_anonymous_traffic_creates_no_session_and_evicts_nobody(
    run: tuple[Path, list[str]],
) -> None:
    app = create_app(run[0], token=TOKEN, rate_limit=RateLimit(client_burst=100))
    state = app.state.vlmalign
    state.sessions.limit = 5  # the old table evicted its oldest entry at the limit
    ana = local_client(app)
    sign_in(ana, "ana", TOKEN)
    for _ in range(20):  # four times the limit, each without a cookie
        anonymous = local_client(app)
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/next", follow_redirects=False).status_code == 303
        assert anonymous.get("/done", follow_redirects=False).status_code == 303
        assert anonymous.post("/login", data={"name": "x"}).status_code == 403
    assert len(state.sessions) == 1
    assert signed_in(ana)


def test_a_full_session_table_refuses_sign_ins_and_signs_nobody_out(
    run: tuple[Path, list[str]],
) -> None:
    app = create_app(run[0])
    state = app.state.vlmalign
    state.sessions.limit = 2
    ana, ben, cy = local_client(app), local_client(app), local_client(app)
    sign_in(ana, "ana")
    sign_in(ben, "ben")
    page = cy.get("/")
    assert cy.post("/login", data={"name": "cy", "csrf": csrf_of(page.text)}).status_code == 503
    assert signed_in(ana) and signed_in(ben) and not signed_in(cy)


def test_an_annotators_many_sign_ins_drop_only_their_own_oldest(
    run: tuple[Path, list[str]],
) -> None:
    app = create_app(run[0], rate_limit=RateLimit(client_burst=100, total_burst=100))
    state = app.state.vlmalign
    state.sessions.per_annotator = 3
    ben = local_client(app)
    sign_in(ben, "ben")
    first_ana = local_client(app)
    sign_in(first_ana, "ana")
    later = [local_client(app) for _ in range(3)]
    for client in later:
        sign_in(client, "ana")
    assert not signed_in(first_ana)  # ana's fourth session dropped her first
    assert all(signed_in(client) for client in later)
    assert signed_in(ben)
    assert len(state.sessions) == 4


def test_sign_in_form_csrf_is_bound_to_its_cookie(run: tuple[Path, list[str]]) -> None:
    app = create_app(run[0])
    victim, attacker = local_client(app), local_client(app)
    stolen = csrf_of(attacker.get("/").text)  # a valid token, for the attacker's own cookie
    victim.get("/")
    assert victim.post("/login", data={"name": "mallory", "csrf": stolen}).status_code == 403
    no_cookie = local_client(app)
    assert no_cookie.post("/login", data={"name": "x", "csrf": stolen}).status_code == 403
    assert attacker.post("/login", data={"name": "eve", "csrf": stolen}).status_code == 200
    assert not signed_in(victim) and signed_in(attacker)


def test_sign_out_ends_the_session(run: tuple[Path, list[str]]) -> None:
    app = create_app(run[0])
    client = local_client(app)
    html = sign_in(client, "ana")
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf_of(html)}).status_code == 200  # → sign-in
    assert not signed_in(client)
    assert len(app.state.vlmalign.sessions) == 0


# --- cookies: Secure behind TLS ----------------------------------------------------------------
def cookie_flags(response: Any) -> dict[str, set[str]]:  # httpx's, or the test client's
    """Each Set-Cookie's name -> its attributes, lower-cased, without values."""
    flags = {}
    for header in response.headers.get_list("set-cookie"):
        name, *attributes = (part.strip() for part in header.split(";"))
        flags[name.split("=")[0]] = {
            a.split("=")[0].lower()
            + ("=" + a.split("=")[1].lower() if a.lower().startswith("samesite") else "")
            for a in attributes
        }
    return flags


def cookies_of_a_visit(url: str, headers: dict[str, str]) -> list[dict[str, set[str]]]:
    """The cookies set by the sign-in page, a sign-in and a sign-out. The cookies are sent
    back by hand: a client sends a Secure cookie over https only, and this one speaks http."""
    jar: dict[str, str] = {}

    def send(client: httpx.Client, method: str, path: str, **form: str) -> httpx.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
        response = client.request(
            method, path, data=form or None, headers={**headers, "cookie": cookie}
        )
        for header in response.headers.get_list("set-cookie"):
            name, value = header.split(";")[0].split("=", 1)
            jar[name] = value.strip('"')
            if "max-age=0" in header.lower():
                del jar[name]
        return response

    with httpx.Client(base_url=url, timeout=30) as client:
        page = send(client, "GET", "/")
        signed = send(client, "POST", "/login", name="ana", csrf=csrf_of(page.text))
        moved = send(client, "GET", signed.headers["location"])
        html = send(client, "GET", moved.headers["location"]).text
        out = send(client, "POST", "/logout", csrf=csrf_of(html))
    seen = [cookie_flags(page), cookie_flags(signed), cookie_flags(out)]
    assert [sorted(s) for s in seen] == [
        ["vlmalign_login"],
        ["vlmalign_login", "vlmalign_session"],  # the session set, the login nonce deleted
        ["vlmalign_session"],  # deleted
    ]
    assert jar == {}
    return seen


@pytest.mark.parametrize(
    ("headers", "secure"),
    [({}, False), ({"x-forwarded-proto": "https"}, True)],
    ids=["plain-http", "behind-a-tls-proxy"],
)
def test_cookies_are_secure_when_the_request_came_over_https(
    run: tuple[Path, list[str]], headers: dict[str, str], secure: bool
) -> None:
    # uvicorn takes the scheme from X-Forwarded-Proto when the proxy's address is trusted
    # (by default loopback, where this test's requests come from).
    with serve(create_app(run[0])) as url:
        for cookies in cookies_of_a_visit(url, headers):
            for flags in cookies.values():
                assert {"httponly", "samesite=strict", "path"} <= flags
                assert ("secure" in flags) is secure


def test_cookies_are_secure_over_https(run: tuple[Path, list[str]]) -> None:
    client = TestClient(create_app(run[0]), base_url="https://127.0.0.1")
    page = client.get("/")
    assert "secure" in cookie_flags(page)["vlmalign_login"]
    signed = client.post(
        "/login", data={"name": "ana", "csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert {"secure", "httponly", "samesite=strict"} <= cookie_flags(signed)["vlmalign_session"]


# --- B7: Host allow-list ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1", 200),
        ("127.0.0.1:8000", 200),
        ("localhost", 200),
        ("LocalHost:8123", 200),
        ("localhost.", 200),
        ("[::1]", 200),
        ("[::1]:8000", 200),
        ("evil.example", 400),
        ("evil.example:8000", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.1.nip.io", 400),
        ("::1", 200),  # malformed (a Host header brackets IPv6) but loopback all the same
        ("[::1]x", 400),
        ("localhost:80:80", 400),
        ("", 400),
    ],
)
def test_host_header_must_be_allowed(run: tuple[Path, list[str]], host: str, status: int) -> None:
    client = local_client(create_app(run[0]))
    response = client.get("/", headers={"host": host})
    assert response.status_code == status
    if status == 400:
        assert "Host" in response.text and len(response.text) < 100
        assert "set-cookie" not in response.headers
        assert response.headers["x-frame-options"] == "DENY"


def test_host_allow_list_follows_bound_and_allowed_hosts(run: tuple[Path, list[str]]) -> None:
    bound = local_client(create_app(run[0], token=TOKEN, host="10.1.2.3"))
    assert bound.get("/", headers={"host": "10.1.2.3:8000"}).status_code == 200
    assert bound.get("/", headers={"host": "10.1.2.4:8000"}).status_code == 400
    wildcard = create_app(run[0], token=TOKEN, host="0.0.0.0", extra_hosts=["Lab.Example"])
    client = local_client(wildcard)
    assert client.get("/", headers={"host": "0.0.0.0:8000"}).status_code == 400
    assert client.get("/", headers={"host": "lab.example:8000"}).status_code == 200
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200


def test_foreign_host_is_refused_before_the_form_is_read(run: tuple[Path, list[str]]) -> None:
    app = create_app(run[0])
    client = local_client(app)
    page = client.get("/")
    response = client.post(
        "/login",
        data={"name": "ana", "csrf": csrf_of(page.text)},
        headers={"host": "evil.example"},
    )
    assert response.status_code == 400
    assert len(app.state.vlmalign.sessions) == 0


# --- sign-in rate limit ------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def attempt(client: TestClient) -> int:
    page = client.get("/")
    data = {"name": "ana", "token": "wrong-token-wrong-token", "csrf": csrf_of(page.text)}
    return client.post("/login", data=data).status_code


def test_sign_in_attempts_are_rate_limited_per_client(run: tuple[Path, list[str]]) -> None:
    clock = Clock()
    limit = RateLimit(client_burst=3, client_per_minute=6, total_burst=100)
    app = create_app(run[0], token=TOKEN, rate_limit=limit, clock=clock)
    client = local_client_at(app, "10.0.0.1")
    assert [attempt(client) for _ in range(4)] == [403, 403, 403, 429]  # a burst of 3
    response = client.post("/login", data={"name": "ana"})
    assert response.status_code == 429 and response.headers["retry-after"] == "60"
    assert attempt(local_client_at(app, "10.0.0.2")) == 403  # another client has its own
    clock.now += 9.9  # 6 a minute: one attempt more every 10 s
    assert attempt(client) == 429
    clock.now += 0.2
    assert attempt(client) == 403
    assert attempt(client) == 429
    clock.now += 10
    assert "Answer" in sign_in(client, "ana", TOKEN)  # the right token is rate limited alike


def test_sign_in_attempts_are_rate_limited_in_total(run: tuple[Path, list[str]]) -> None:
    clock = Clock()
    limit = RateLimit(client_burst=10, total_burst=4, total_per_minute=60)
    app = create_app(run[0], token=TOKEN, rate_limit=limit, clock=clock)
    clients = [local_client_at(app, f"10.0.0.{n}") for n in range(6)]
    assert [attempt(c) for c in clients] == [403, 403, 403, 403, 429, 429]
    clock.now += 1  # 60 a minute in total: one more each second
    assert [attempt(c) for c in clients[4:]] == [403, 429]


# --- tokens ------------------------------------------------------------------------------------
def test_short_token_is_refused(run: tuple[Path, list[str]]) -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        create_app(run[0], token="s3cret")


def test_cli_token_rules(
    run: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = str(run[0])
    code, _, err, served = run_cli([run_dir, "--token", "fifteen-chars!!"], monkeypatch, capsys)
    assert code == 2 and not served
    assert "at least 16 characters" in err and len(err.strip().splitlines()) == 1
    code, _, err, _ = run_cli([run_dir, "--host", "0.0.0.0"], monkeypatch, capsys)
    assert code == 2 and "--annotators" in err  # off loopback: a token for each annotator
    code, out, _, served = run_cli([run_dir, "--token", "auto"], monkeypatch, capsys)
    assert code == 0
    printed = re.search(r"access token \(annotators enter it to sign in\): (\S+)", out)
    assert printed and len(printed.group(1)) >= 16
    assert served[0].state.vlmalign.token == printed.group(1)
    names = run[0] / "names.txt"
    names.write_text("ana\n", encoding="utf-8")
    args = [run_dir, "--host", "0.0.0.0", "--annotators", str(names)]
    code, out, _, served = run_cli(args, monkeypatch, capsys)
    assert code == 0
    assert "--allowed-host" in out  # a wildcard bind serves only loopback names unless told
    code, _, _, served = run_cli([run_dir, "--token", "x" * 16], monkeypatch, capsys)
    assert code == 0 and served[0].state.vlmalign.token == "x" * 16


def test_cli_allowed_hosts(
    run: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(run[0]), "--allowed-host", "lab.example", "--allowed-host", "10.0.0.7"]
    code, _, _, served = run_cli(args, monkeypatch, capsys)
    assert code == 0
    client = local_client(served[0])
    for host, status in [("lab.example", 200), ("10.0.0.7:8000", 200), ("evil.example", 400)]:
        assert client.get("/", headers={"host": host}).status_code == status
    code, _, err, _ = run_cli([str(run[0]), "--allowed-host", "*.example"], monkeypatch, capsys)
    assert code == 2 and "--allowed-host" in err


# --- request bodies ----------------------------------------------------------------------------
def test_large_bodies_and_many_fields_are_refused(run: tuple[Path, list[str]]) -> None:
    app = create_app(run[0])
    client = local_client(app)
    csrf = csrf_of(client.get("/").text)
    big = {"name": "ana", "csrf": csrf, "pad": "x" * MAX_BODY}
    assert client.post("/login", data=big).status_code == 413
    many = {"name": "ana", "csrf": csrf, **{f"f{n}": "1" for n in range(1000)}}
    assert client.post("/login", data=many).status_code == 413

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        yield b"name=ana&csrf=" + csrf.encode() + b"&pad="
        for _ in range(100):
            yield b"x" * 1024

    chunked = client.post(
        "/login",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    multipart = client.post("/login", files={"name": ("a.txt", b"ana")}, data={"csrf": csrf})
    assert multipart.status_code == 415
    assert len(app.state.vlmalign.sessions) == 0
    assert client.post("/login", data={"name": "ana", "csrf": csrf}).status_code == 200


# --- the store: off the event loop, busy, imports while serving --------------------------------
def test_a_blocked_store_call_does_not_stall_other_requests(
    run: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    original = RunStore.add_label_once

    def blocking_add_label(self: RunStore, row: LabelRow, window_s: float) -> bool:
        entered.set()
        assert release.wait(timeout=60)
        return original(self, row, window_s)

    monkeypatch.setattr(RunStore, "add_label_once", blocking_add_label)
    results: dict[str, int] = {}
    app = create_app(run[0], seed=2)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, follow_redirects=True) as ana:
        page = ana.get("/")
        html = ana.post("/login", data={"name": "ana", "csrf": csrf_of(page.text)}).text
        key, csrf = key_of(html), csrf_of(html)

        def post_label() -> None:
            form = {"label": "aligned", "csrf": csrf}
            results["label"] = ana.post(f"/r/{key}", data=form).status_code

        writer = threading.Thread(target=post_label)
        writer.start()
        assert entered.wait(timeout=30)
        # The label's store call is stuck; other requests are still served meanwhile (with the
        # old async endpoints the event loop itself was stuck, and these timed out).
        with httpx.Client(base_url=url, timeout=10) as other:
            assert other.get("/").status_code == 200
            assert other.get("/static/annotate.css").status_code == 200
        assert "label" not in results
        release.set()
        writer.join(timeout=30)
    assert results["label"] == 200  # followed to the next response
    with RunStore(run[0]) as store:
        assert [(r.generation_key, r.label) for r in store.labels()] == [(key, "aligned")]


def test_locked_store_is_503_not_a_frozen_app(run: tuple[Path, list[str]]) -> None:
    client = local_client(create_app(run[0], busy_timeout=0.05))
    html = sign_in(client, "ana")
    form = {"label": "aligned", "csrf": csrf_of(html)}
    locker = sqlite3.connect(run[0] / "study.sqlite", isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process writing, say a large import
        response = client.post(f"/r/{key_of(html)}", data=form)
        assert response.status_code == 503
        assert "busy" in response.text
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert client.post(f"/r/{key_of(html)}", data=form).status_code == 200


def test_labels_stored_by_another_process_count_while_serving(
    run: tuple[Path, list[str]],
) -> None:
    app = create_app(run[0], overlap=1, seed=4)
    ana = local_client(app)
    html = sign_in(ana, "ana")
    assert "0 / 5 labelled" in html
    with RunStore(run[0]) as store:  # like `vlmalign labels import` in another terminal
        store.add_labels(
            [
                LabelRow(k, "imported", "aligned", "", "2024-01-01T00:00:00+00:00")
                for k in run[1][:2]
            ]
        )
    assert "0 / 3 labelled" in ana.get("/next").text  # K=1: two responses are covered


# --- work per request ---------------------------------------------------------------------------
def sqlite_steps(run_dir: Path, bulk_labels: int) -> list[int]:
    """SQLite VM instructions of a sign-in, one label, one page view and /next, after
    `bulk_labels` labels by other annotators were stored."""
    with RunStore(run_dir) as store:
        keys = store.all_generation_keys()
        store.add_labels(
            [
                LabelRow(keys[n % len(keys)], f"bulk-{n // len(keys)}", "unsure", "", "t")
                for n in range(bulk_labels)
            ]
        )
    app = create_app(run_dir, seed=9)
    client = local_client(app)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    app.state.vlmalign.store.conn.set_progress_handler(count, 1)
    measured = []
    html = sign_in(client, "ana")
    measured.append(steps[0])
    key = key_of(html)
    client.post(f"/r/{key}", data={"label": "aligned", "csrf": csrf_of(html)})
    measured.append(steps[0] - sum(measured))
    client.get(f"/r/{key}")
    measured.append(steps[0] - sum(measured))
    client.get("/next")
    measured.append(steps[0] - sum(measured))
    return measured


def test_request_work_does_not_grow_with_the_labels(tmp_path: Path) -> None:
    from tests.annotate.conftest import make_run

    answers = ["Yes.", "No.", "Maybe.", "Yes, help.", "No, never."]
    make_run(tmp_path / "few", answers)
    make_run(tmp_path / "many", answers)
    few = sqlite_steps(tmp_path / "few", 0)
    many = sqlite_steps(tmp_path / "many", 20_000)
    # Reading 20,000 labels takes about 180,000 steps; each request takes the same few hundred
    # or fewer either way (a B-tree one level deeper may add a handful).
    for small, large in zip(few, many, strict=True):
        assert large <= small * 1.1 + 20, (few, many)
