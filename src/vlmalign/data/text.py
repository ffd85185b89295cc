"""Text from input files, shown safely: control characters and escapes never reach a terminal.

A dataset may hold any Unicode text (a question may well contain a tab or a U+2028), but printing
it raw lets a file move the cursor, ring the bell, recolour the terminal or reorder text (bidi
controls). `printable` writes such characters the way `repr` does (`\\x1b`, `\\u2028`), and leaves
everything else, backslashes included, as it is, so applying it twice changes nothing.

A web page needs less and more: line breaks and tabs are ordinary there, but a bidi control
(`BIDI_CONTROLS`) would still reorder what a reader sees, so a response `\\u202eseY\\u202c` reads
"Yes". `visible_text` shows those (and control characters) escaped the same way, for the
annotation app's pages and the HTML report; HTML escaping stays the template's job.
"""

from __future__ import annotations

import unicodedata

# Control (Cc), format (Cf: bidi overrides, zero-width characters), surrogate (Cs), line and
# paragraph separators (Zl, Zp). Other spaces (Zs, e.g. no-break space) are harmless.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Characters that change the order or direction in which text is displayed: the embeddings and
# overrides (U+202A-U+202E), the isolates (U+2066-U+2069) and the marks (LRM, RLM, ALM). All are
# Cf, so `printable` escapes them too.
BIDI_CONTROLS = frozenset(
    [
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
        "\u200e",
        "\u200f",
        "\u061c",
    ]
)
KEPT_ON_PAGES = frozenset("\t\n\r")  # ordinary whitespace in a page's text


def is_unsafe(char: str) -> bool:
    """A character that must not be printed raw to a terminal."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def first_unsafe(text: str) -> str | None:
    """The first character of `text` that must not be printed raw, or None."""
    if text.isprintable():
        return None
    return next((c for c in text if is_unsafe(c)), None)


def escape_char(char: str) -> str:
    """`\\x1b`, `\\u2028` or `\\U000e0001`, as `repr` writes a non-printable character."""
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every unsafe character escaped; safe text comes back unchanged."""
    if first_unsafe(text) is None:
        return text
    return "".join(escape_char(c) if is_unsafe(c) else c for c in text)


def hidden_on_pages(char: str) -> bool:
    """A character a web page must show escaped: a bidi control, a control character other
    than a tab or a line break, or a lone surrogate (which UTF-8 cannot carry)."""
    if char in BIDI_CONTROLS:
        return True
    category = unicodedata.category(char)
    return category == "Cs" or (category == "Cc" and char not in KEPT_ON_PAGES)


def visible_text(text: str) -> str:
    """Untrusted text for a web page: bidi controls and control characters (not tabs or line
    breaks) written as `\\u202e`, `\\x1b`; other text comes back unchanged, so applying it
    twice changes nothing. Still HTML-escape the result (templates autoescape)."""
    if text.isprintable():
        return text
    return "".join(escape_char(c) if hidden_on_pages(c) else c for c in text)
