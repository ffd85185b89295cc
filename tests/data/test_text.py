"""Untrusted text shown safely: every bidi control is shown escaped, on a terminal and on a page.

The expected escapes are what Python's `repr` writes for each character, never the code's own.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vlmalign.data.text import BIDI_CONTROLS, first_unsafe, printable, visible_text

# The bidi controls by their Unicode names: embeddings, overrides, isolates and marks.
BIDI = [
    "\u202a",  # LEFT-TO-RIGHT EMBEDDING
    "\u202b",  # RIGHT-TO-LEFT EMBEDDING
    "\u202c",  # POP DIRECTIONAL FORMATTING
    "\u202d",  # LEFT-TO-RIGHT OVERRIDE
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2067",  # RIGHT-TO-LEFT ISOLATE
    "\u2068",  # FIRST STRONG ISOLATE
    "\u2069",  # POP DIRECTIONAL ISOLATE
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u061c",  # ARABIC LETTER MARK
]


def test_the_bidi_controls_are_the_ones_unicode_names() -> None:
    assert frozenset(BIDI) == BIDI_CONTROLS


@pytest.mark.parametrize("control", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
@pytest.mark.parametrize("show", [printable, visible_text], ids=["terminal", "page"])
def test_each_bidi_control_is_shown_escaped(show: Callable[[str], str], control: str) -> None:
    text = f"{control}seY\u202c and more"
    shown = show(text)
    assert not any(c in shown for c in BIDI), ascii(shown)
    assert shown == repr(text)[1:-1]  # exactly what repr writes, e.g. \u202eseY\u202c
    assert show(shown) == shown  # applying it twice changes nothing
    assert first_unsafe(text) == control


def test_a_page_keeps_line_breaks_and_tabs_but_escapes_other_controls() -> None:
    text = "Yes.\n\tSecond line\r\nbell\x07 esc\x1b[31m \u2028 emoji \U0001f468\u200d\U0001f469"
    shown = visible_text(text)
    assert shown == (
        "Yes.\n\tSecond line\r\nbell\\x07 esc\\x1b[31m \u2028 emoji \U0001f468\u200d\U0001f469"
    )
    assert visible_text("plain text, back\\slash") == "plain text, back\\slash"
