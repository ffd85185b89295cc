"""Off loopback each annotator signs in with a token of their own (`--annotators FILE`).

The regression: identity was the name alone, so anyone who could sign in (one shared token)
could sign in as "alice" and file labels under her name.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import httpx
import pytest

from tests.annotate.conftest import local_client, run_cli, serve
from vlmalign.annotate import credentials
from vlmalign.annotate.app import create_app
from vlmalign.annotate.credentials import TOKENS_FILE, AnnotatorTokens, TokenHash
from vlmalign.store import RunStore

NOT_AGAIN = "they are not shown again"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def key_of(html: str) -> str:
    match = re.search(r'action="/r/([0-9a-f]{64})"', html)
    assert match, html
    return match.group(1)


def printed_tokens(out: str) -> dict[str, str]:
    """The name and token lines the command printed, after the line saying they are shown once."""
    if NOT_AGAIN not in out:
        return {}
    lines = out.split(NOT_AGAIN, 1)[1].splitlines()[1:]
    found = [re.fullmatch(r"  (\S+) +(\S{32})", line) for line in lines]
    return {m.group(1): m.group(2) for m in found if m}


def sign_in(client: httpx.Client, name: str, token: str) -> httpx.Response:
    page = client.get("/")
    data = {"name": name, "token": token, "csrf": csrf_of(page.text)}
    return client.post("/login", data=data)


def signed_in(client: httpx.Client) -> bool:
    return client.get("/next").headers.get("location") not in (None, "/")


@pytest.fixture
def names(tmp_path: Path) -> Path:
    path = tmp_path / "annotators.txt"
    path.write_text("# the lab's annotators\nalice\n\n  bob  \n", encoding="utf-8")
    return path


def start(
    run_dir: Path,
    names: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *more: str,
) -> tuple[int, str, str, list]:
    args = [str(run_dir), "--host", "0.0.0.0", "--annotators", str(names), *more]
    return run_cli(args, monkeypatch, capsys)


def test_tokens_are_printed_once_and_only_their_hashes_kept(
    run: tuple[Path, list[str]],
    names: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _, served = start(run[0], names, monkeypatch, capsys)
    assert code == 0 and served
    tokens = printed_tokens(out)
    assert sorted(tokens) == ["alice", "bob"] and tokens["alice"] != tokens["bob"]
    kept = run[0] / TOKENS_FILE
    text = kept.read_text(encoding="utf-8")
    assert "alice" in text and "bob" in text
    assert not any(token in text for token in tokens.values())  # salted hashes only
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    # The same file again: the same tokens hold, and none is shown.
    code, out, _, served = start(run[0], names, monkeypatch, capsys)
    assert code == 0 and NOT_AGAIN not in out and "keep the tokens" in out
    assert kept.read_text(encoding="utf-8") == text
    again = served[0].state.vlmalign.annotators
    assert again.verify("alice", tokens["alice"]) and again.verify("bob", tokens["bob"])

    # A name added gets a token, shown once; a name taken out can no longer sign in.
    names.write_text("alice\ncarol\n", encoding="utf-8")
    code, out, _, served = start(run[0], names, monkeypatch, capsys)
    added = printed_tokens(out)
    assert code == 0 and list(added) == ["carol"]
    now = served[0].state.vlmalign.annotators
    assert now.verify("alice", tokens["alice"]) and now.verify("carol", added["carol"])
    assert not now.verify("bob", tokens["bob"])

    # --new-tokens: new ones for every name; the old ones stop working.
    code, out, _, served = start(run[0], names, monkeypatch, capsys, "--new-tokens")
    renewed = printed_tokens(out)
    assert code == 0 and sorted(renewed) == ["alice", "carol"]
    fresh = served[0].state.vlmalign.annotators
    assert fresh.verify("alice", renewed["alice"]) and not fresh.verify("alice", tokens["alice"])


def wrong_last(token: str) -> str:
    """`token` with its last character changed (to another one, whatever it was)."""
    return token[:-1] + ("y" if token.endswith("x") else "x")


def test_each_annotator_signs_in_with_their_own_token_only(
    run: tuple[Path, list[str]],
    names: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _, served = start(run[0], names, monkeypatch, capsys)
    assert code == 0
    tokens = printed_tokens(out)
    app = served[0]
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as alice:
        response = sign_in(alice, "alice", tokens["alice"])
        assert response.status_code == 303 and signed_in(alice)
        html = alice.get(response.headers["location"], follow_redirects=True).text
        assert "signed in as <strong>alice</strong>" in html
        form = {"label": "aligned", "csrf": csrf_of(html)}
        assert alice.post(f"/r/{key_of(html)}", data=form).status_code == 303

        for name, token in [
            ("alice", ""),  # no token
            ("alice", tokens["bob"]),  # another annotator's token
            ("alice", wrong_last(tokens["alice"])),  # a wrong one
            ("mallory", tokens["alice"]),  # a name not in the file, with a real token
            ("mallory", ""),
        ]:
            with httpx.Client(base_url=url, timeout=30) as mallory:
                refused = sign_in(mallory, name, token)
                assert refused.status_code == 403, (name, token)
                assert "wrong name or token" in refused.text
                assert not signed_in(mallory)
        # Nobody took alice's name over: she is still signed in, and hers are the only labels.
        assert signed_in(alice)
        assert len(app.state.vlmalign.sessions) == 1
        with httpx.Client(base_url=url, timeout=30) as bob:
            assert sign_in(bob, "bob", tokens["bob"]).status_code == 303
    with RunStore(run[0]) as store:
        assert [r.annotator for r in store.labels()] == ["alice"]
        seeds = store.conn.execute("SELECT name FROM annotators ORDER BY name").fetchall()
    assert [row["name"] for row in seeds] == ["alice", "bob"]


def test_the_sign_in_form_asks_for_the_annotators_own_token(run: tuple[Path, list[str]]) -> None:
    tokens = AnnotatorTokens({"alice": TokenHash.of("a" * 32)})
    page = local_client(create_app(run[0], annotators=tokens)).get("/")
    assert "Your token" in page.text and 'name="token"' in page.text
    with pytest.raises(ValueError, match="own tokens"):
        create_app(run[0], token="x" * 16, annotators=tokens)


def test_an_unknown_name_costs_the_same_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = AnnotatorTokens({"alice": TokenHash.of("a" * 32)})
    calls: list[bytes] = []
    derive = credentials._derive

    def counted(token: str, salt: bytes, iterations: int) -> bytes:
        calls.append(salt)
        return derive(token, salt, iterations)

    monkeypatch.setattr(credentials, "_derive", counted)
    assert tokens.verify("alice", "a" * 32)
    assert not tokens.verify("mallory", "a" * 32)
    assert len(calls) == 2


def test_cli_annotator_rules(
    run: tuple[Path, list[str]],
    names: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = str(run[0])

    def refused(*args: str) -> str:
        code, _, err, served = run_cli([run_dir, *args], monkeypatch, capsys)
        assert code == 2 and not served, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
        return err

    # Off loopback, a shared token no longer suffices: each annotator needs their own.
    assert "--annotators FILE" in refused("--host", "0.0.0.0", "--token", "auto")
    assert "--annotators FILE" in refused("--host", "10.0.0.5")
    assert "drop --token" in refused("--annotators", str(names), "--token", "auto")
    assert "--annotators" in refused("--new-tokens")
    bad = tmp_path / "bad.txt"
    for text, problem in [
        ("alice\nbob\nalice\n", "bad.txt:3: 'alice' is listed twice (line 1)"),
        ("alice\nb\x1bb\n", "bad.txt:2: annotator name has control characters"),
        ("alice\n" + "x" * 65 + "\n", "bad.txt:2: annotator name is longer than 64"),
        ("# nobody yet\n\n", "lists no annotator names"),
    ]:
        bad.write_text(text, encoding="utf-8")
        assert problem in refused("--annotators", str(bad))
    assert "does not exist" in refused("--annotators", str(tmp_path / "missing.txt"))
    assert not (run[0] / TOKENS_FILE).exists()  # nothing issued by a refused command
    # Loopback stays as simple as before: a name, and the optional shared token.
    code, _, _, served = run_cli([run_dir], monkeypatch, capsys)
    assert code == 0 and served[0].state.vlmalign.annotators is None
    assert local_client(served[0]).get("/").text.count('name="token"') == 0
