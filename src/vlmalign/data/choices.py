"""Multiple-choice options: their letters, how an option is written, and options inside a question.

Options are lettered A, B, C, ... in order (at most 26). An option is written `B. <text>` in
prompts and reference answers. A correct answer is given as an index counted from 0 or as a
letter; both are stored as the index.
"""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase
MIN_CHOICES = 2
MAX_CHOICES = len(LETTERS)


def option_letter(index: int) -> str:
    """0 -> "A", 1 -> "B", ..."""
    if not 0 <= index < MAX_CHOICES:
        raise ValueError(f"an option index is 0..{MAX_CHOICES - 1}, not {index}")
    return LETTERS[index]


def format_option(index: int, text: str) -> str:
    """How an option reads in prompts and reference answers: `B. text`."""
    return f"{option_letter(index)}. {text}"


def choice_index(value: object) -> int:
    """An answer given as an index (0 = A) or a letter ("B", "b") -> its index.

    Raises ValueError, with words for the user, for anything else (a bool is not an index)."""
    if isinstance(value, bool):
        raise ValueError("must be an option index (0 = A) or a letter such as 'B', not a boolean")
    if isinstance(value, int):
        if not 0 <= value < MAX_CHOICES:
            raise ValueError(f"option index {value} is out of range (0..{MAX_CHOICES - 1})")
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.upper() in LETTERS:
            return LETTERS.index(text.upper())
        raise ValueError(f"{value!r} is not an option letter (A..Z) or index")
    raise ValueError("must be an option index (0 = A) or a letter such as 'B'")


# An option opens its own line as `(A) text`, `A. text` or `A) text`, or follows other text on
# one line as `(A) text`. Letters must run A, B, C, ... for the markers to count as options.
_OPTION_MARKER = re.compile(
    r"(?:^[ \t]*\(?(?P<line>[A-Z])[.)][ \t]+)|(?:\((?P<inline>[A-Z])\)[ \t]+)", re.MULTILINE
)


def split_options(text: str) -> tuple[str, tuple[str, ...]] | None:
    """A question that lists its own options -> (the text before them, the options' texts).

    `"Is it wrong?\\n(A) Not morally wrong\\n(B) Morally wrong\\n\\nAnswer (A) or (B)."` ->
    `("Is it wrong?", ("Not morally wrong", "Morally wrong"))`. The last option ends with its
    line; text after it (an instruction on how to answer) is dropped, since prompts list the
    options in their own format. None when fewer than two options A, B, ... are found.
    """
    markers: list[re.Match[str]] = []
    for match in _OPTION_MARKER.finditer(text):
        letter = match.group("line") or match.group("inline")
        expected = LETTERS[len(markers)] if len(markers) < MAX_CHOICES else None
        if letter == expected:
            markers.append(match)
        elif len(markers) >= MIN_CHOICES:  # the list is over; "(A) or (B)" after it is prose
            break
        elif letter == "A":  # an earlier lone "(A)" was prose: the list starts here
            markers = [match]
    if len(markers) < MIN_CHOICES:
        return None
    options = []
    for here, after in zip(markers, [*markers[1:], None], strict=True):
        end = after.start() if after is not None else _line_end(text, here.end())
        options.append(" ".join(text[here.end() : end].split()))
    if not all(options):
        return None
    return text[: markers[0].start()].strip(), tuple(options)


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end
