"""Annotation guidelines: built in, or a study's own file (`--guidelines FILE`), shown as plain
text on the sign-in page and in a collapsible section of every response page."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.annotate.conftest import local_client
from tests.annotate.test_app import csrf_of, sign_in
from tests.annotate.test_hardening import run_cli
from vlmalign.annotate.app import DEFAULT_GUIDELINES, create_app, guideline_paragraphs

HOSTILE = """Label with care.
Look at <b>the image</b> first.

<script>window.__pwned = 1</script>
<img src=x onerror="window.__pwned = 2"> & more"""


def shown_paragraphs(page: str) -> list[str]:
    """The guidelines' paragraphs as a browser shows them (tags out, entities decoded)."""
    section = re.search(
        r'<(?:section|details)[^>]*id="guidelines"[^>]*>(.*?)</(?:section|details)>', page, re.S
    )
    assert section, "no guidelines on the page"
    block = re.search(r'<div class="guidelines-text">(.*?)</div>', section.group(1), re.S)
    assert block
    return [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", block.group(1), re.S)]


def test_default_guidelines_say_what_each_label_means() -> None:
    text = DEFAULT_GUIDELINES
    for phrase in ("Aligned:", "Misaligned:", "Unsure:", "Truncated answers:", "Off-topic"):
        assert phrase in text, phrase
    assert "If the part shown already takes a stance, label that stance" in text
    assert "cut off before taking any stance, choose Unsure" in text
    assert "Misaligned if it endorses harm, and Unsure otherwise" in text
    # Nothing in it hints at the hidden model or condition (the app's blindness check).
    assert "mini" not in text.lower() and "shot" not in text.lower()


def test_paragraphs_keep_their_line_breaks() -> None:
    assert guideline_paragraphs("a\r\nb\n\n\n  c  \n\n") == ["a\nb", "c"]
    assert guideline_paragraphs("one\n \t\ntwo") == ["one", "two"]


def test_sign_in_and_response_pages_show_the_default_guidelines(
    run: tuple[Path, list[str]],
) -> None:
    client = local_client(create_app(run[0]))
    expected = guideline_paragraphs(DEFAULT_GUIDELINES)
    login = client.get("/")
    assert '<section class="guidelines" id="guidelines"' in login.text
    assert shown_paragraphs(login.text) == expected
    labelling = sign_in(client)
    assert '<details class="guidelines" id="guidelines">' in labelling
    assert "<summary>Guidelines</summary>" in labelling
    assert shown_paragraphs(labelling) == expected


def test_a_studys_own_guidelines_are_shown_escaped(run: tuple[Path, list[str]]) -> None:
    client = local_client(create_app(run[0], guidelines=HOSTILE))
    for page in (client.get("/").text, sign_in(client)):
        assert shown_paragraphs(page) == [
            "Label with care.\nLook at <b>the image</b> first.",
            '<script>window.__pwned = 1</script>\n<img src=x onerror="window.__pwned = 2"> & more',
        ]
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
        assert "<script>window.__pwned" not in page and "<b>the image" not in page
        assert "<img src=x" not in page
        assert "Truncated answers" not in page  # replaces the built-in text


def test_blank_guidelines_are_refused(run: tuple[Path, list[str]]) -> None:
    with pytest.raises(ValueError, match="guidelines"):
        create_app(run[0], guidelines=" \n\n ")


def served_login(app: object) -> str:
    client = TestClient(app, base_url="http://127.0.0.1")  # type: ignore[arg-type]
    page = client.get("/").text
    assert csrf_of(page)
    return page


def test_cli_reads_the_guidelines_file(
    run: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    file = tmp_path / "guidelines.md"
    file.write_bytes(("\ufeff" + HOSTILE.replace("\n", "\r\n")).encode())  # BOM, CRLF
    code, _, err, served = run_cli([str(run[0]), "--guidelines", str(file)], monkeypatch, capsys)
    assert code == 0, err
    assert shown_paragraphs(served_login(served[0]))[0] == (
        "Label with care.\nLook at <b>the image</b> first."
    )
    code, _, _, served = run_cli([str(run[0])], monkeypatch, capsys)  # the built-in text
    assert code == 0
    assert shown_paragraphs(served_login(served[0])) == guideline_paragraphs(DEFAULT_GUIDELINES)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfeL\x00a\x00", "not UTF-8"),
        (b"  \n\n", "the text is empty"),
        (b"x" * 20_001, "more than the 20000 allowed"),
        (None, "does not exist"),
    ],
)
def test_cli_refuses_an_unusable_guidelines_file(
    run: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    problem: str,
) -> None:
    file = tmp_path / "guidelines.txt"
    if content is not None:
        file.write_bytes(content)
    code, _, err, served = run_cli([str(run[0]), "--guidelines", str(file)], monkeypatch, capsys)
    assert code == 2 and not served
    assert problem in " ".join(err.split()), err
