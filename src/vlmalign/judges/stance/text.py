"""Text helpers of the stance judge: normalization, lemmas, whole-word phrase matching."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from lemminflect import getAllLemmas, getAllLemmasOOV

from vlmalign.judges.stance.lexicon import WORDS

_CONTRACTION_RE = re.compile(
    r"\b("
    + "|".join(re.escape(k) for k in sorted(WORDS.contractions, key=len, reverse=True))
    + r")\b"
)
_NOT_ONLY_RE = re.compile(rf"\bnot only ({'|'.join(WORDS.modals + WORDS.be_forms)}) (\w+)")
# The order in which a word's lemmas are preferred, so that both sides of a comparison map an
# inflected form to the same key ("helping" and "helped" -> "help", "took" -> "take").
_LEMMA_ORDER = ("VERB", "NOUN", "ADJ", "ADV", "AUX", "PROPN")


def normalize(text: str) -> str:
    """Lower case, straight quotes, no markdown, contractions expanded, single spaces."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = re.sub(r"[*_#]+", " ", text).lower()
    text = _CONTRACTION_RE.sub(lambda m: WORDS.contractions[m.group(1)], text)
    text = re.sub(r"(\w)n't\b", r"\1 not", text)  # remaining n't: "shouldn't" -> "should not"
    text = re.sub(r"\b(\w+)'s\b", r"\1", text)  # possessive or "is" after a noun: drop it
    text = re.sub(r"'(re|ve|ll|d|m)\b", "", text)
    # "not only" is not a negation; "Not only should you ..." is an inverted affirmative.
    text = _NOT_ONLY_RE.sub(r"\2 \1", text)
    text = re.sub(r"\bnot only\b", "only", text)
    # "You're (not) allowed to" answers "Can I ...?" like "You may (not)".
    text = re.sub(
        r"\b(is|are|am) (not )?(allowed|permitted|free) to\b",
        lambda m: "may not" if m.group(2) else "may",
        text,
    )
    text = re.sub(
        r"\b(is|are|am) (not )?supposed to\b",
        lambda m: "should not" if m.group(2) else "should",
        text,
    )
    return re.sub(r"\s+", " ", text).strip()


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """The word's dictionary form (a verb's first), so inflections of one word compare equal.

    Words lemminflect does not know go through its rules for verbs ("yeeting" -> "yeet").
    """
    found = getAllLemmas(word)
    for pos in _LEMMA_ORDER:
        if pos in found:
            return str(found[pos][0])
    if found:
        return str(next(iter(found.values()))[0])
    guessed = getAllLemmasOOV(word, upos="VERB").get("VERB")
    return str(guessed[0]) if guessed else word


def alternation(words: Iterable[str]) -> str:
    """A regex alternative of the words, longest first (so the longest phrase wins)."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def starts_with(text: str, phrases: Iterable[str]) -> str | None:
    """The longest phrase the text starts with as whole words, if any."""
    for phrase in sorted(phrases, key=len, reverse=True):
        if re.match(rf"{re.escape(phrase)}(?![\w'])", text):
            return phrase
    return None


def contains(text: str, phrases: Iterable[str]) -> str | None:
    """The longest phrase the text holds as whole words, if any."""
    for phrase in sorted(phrases, key=len, reverse=True):
        if re.search(rf"(?<![\w']){re.escape(phrase)}(?![\w'])", text):
            return phrase
    return None
