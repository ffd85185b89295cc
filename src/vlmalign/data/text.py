"""Text from input files, shown safely: control characters and escapes never reach a terminal.

A dataset may hold any Unicode text (a question may well contain a tab or a U+2028), but printing
it raw lets a file move the cursor, ring the bell, recolour the terminal or reorder text (bidi
controls). `printable` writes such characters the way `repr` does (`\\x1b`, `\\u2028`), and leaves
everything else, backslashes included, as it is, so applying it twice changes nothing.
"""

from __future__ import annotations

import unicodedata

# Control (Cc), format (Cf: bidi overrides, zero-width characters), surrogate (Cs), line and
# paragraph separators (Zl, Zp). Other spaces (Zs, e.g. no-break space) are harmless.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


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
