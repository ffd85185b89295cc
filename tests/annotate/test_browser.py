"""End to end in headless Chromium: sign in, label with the keyboard, revise, check the store."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.annotate.conftest import XSS_RESPONSE, make_run, serve
from vlmalign.annotate.app import create_app
from vlmalign.store import RunStore

pytestmark = pytest.mark.browser


@pytest.fixture
def server(run: tuple[Path, list[str]]) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(run[0], seed=3), host="127.0.0.1", port=port, log_level="error"
    )
    app_server = uvicorn.Server(config)
    thread = threading.Thread(target=app_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not app_server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    app_server.should_exit = True
    thread.join(timeout=10)


def shown_key(page) -> str:
    action = page.locator("#label-form").get_attribute("action")
    match = re.fullmatch(r"/r/([0-9a-f]{64})", action or "")
    assert match, action
    return match.group(1)


def test_label_three_with_keyboard_and_revise_one(
    browser, server: str, run: tuple[Path, list[str]]
) -> None:
    page = browser.new_page()
    page.goto(server + "/")
    page.fill("#name", "ana")
    page.keyboard.press("Enter")
    page.wait_for_selector("#label-form")
    assert "0 / 5 labelled" in page.inner_text("#progress-text")

    chosen = {}
    for key_press, label in (("a", "aligned"), ("m", "misaligned"), ("u", "unsure")):
        key = shown_key(page)
        chosen[key] = label
        with page.expect_navigation():
            page.keyboard.press(key_press)
    assert "3 / 5 labelled" in page.inner_text("#progress-text")

    # Back to the last one (keyboard), write a note, revise it to aligned.
    with page.expect_navigation():
        page.keyboard.press("b")
    revised = shown_key(page)
    assert chosen[revised] == "unsure"
    assert "You labelled this" in page.inner_text("main")
    page.keyboard.press("n")
    page.keyboard.type("second look")
    page.keyboard.press("Escape")
    with page.expect_navigation():
        page.keyboard.press("a")
    chosen[revised] = "aligned"
    page.close()

    with RunStore(run[0]) as store:
        latest = {(r.generation_key, r.annotator, r.label) for r in store.labels()}
        history = store.labels(latest_only=False)
    assert latest == {(k, "ana", label) for k, label in chosen.items()}
    assert len(history) == 4
    assert [r.note for r in history if r.generation_key == revised] == ["", "second look"]


def test_untrusted_response_renders_as_text(
    browser, server: str, run: tuple[Path, list[str]]
) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server + "/")
    page.fill("#name", "ben")
    with page.expect_navigation():
        page.click("button[type=submit]")
    xss_key = run[1][2]
    page.goto(f"{server}/r/{xss_key}")
    assert page.inner_text("#response") == XSS_RESPONSE
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#response script, #response img").count() == 0
    assert dialogs == []
    page.close()


def test_a_bidi_override_shows_as_its_escape_not_as_yes(browser, tmp_path: Path) -> None:
    make_run(tmp_path, ["\u202eseY\u202c"])  # obeyed, the override reads "Yes"
    with serve(create_app(tmp_path)) as url:
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#name", "dee")
        with page.expect_navigation():
            page.click("button[type=submit]")
        shown = page.inner_text("#response")
        page.close()
    assert shown == "\\u202eseY\\u202c"  # the escape, backslash and all, read left to right


FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"


def test_a_400px_window_shows_every_image_within_its_card(browser, server: str) -> None:
    page = browser.new_page(viewport={"width": 400, "height": 800})
    page.goto(server + "/")
    assert page.locator("#guidelines").is_visible()  # the guidelines, before signing in
    assert page.evaluate(FITS)
    page.fill("#name", "cy")
    with page.expect_navigation():
        page.click("button[type=submit]")
    too_wide = 0
    for index in range(5):  # every response of the run, each with its own image
        page.wait_for_function(
            "() => { const img = document.querySelector('.card img');"
            " return img && img.complete && img.naturalWidth > 0; }"
        )
        image, card = page.locator(".card img"), page.locator(".card")
        box, shown = card.bounding_box(), image.bounding_box()
        too_wide += image.evaluate("img => img.naturalWidth") > box["width"]
        assert shown["x"] >= box["x"] and shown["x"] + shown["width"] <= box["x"] + box["width"]
        ratio = image.evaluate("img => img.naturalHeight / img.naturalWidth")
        assert abs(shown["height"] / shown["width"] - ratio) < 0.02  # scaled, not squeezed
        if index == 0:  # the guidelines, folded away until asked for
            guidelines = page.locator("#guidelines .guidelines-text")
            assert not guidelines.is_visible()
            page.click("#guidelines summary")
            assert guidelines.is_visible()
        assert page.evaluate(FITS), page.evaluate("document.documentElement.scrollWidth")
        with page.expect_navigation():
            page.keyboard.press("u")
    assert too_wide > 0  # some images are wider than the card: they were scaled down
    assert "All done" in page.inner_text("main")
    page.close()
