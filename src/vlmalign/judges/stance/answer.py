"""The answer proper: a response cut down to what answers the question asked.

Model answers copy the few-shot pattern: they echo the question, start a new "Q:", or restate
the question before answering it. What is left is split into normalized sentences.
"""

from __future__ import annotations

import re

from vlmalign.judges.stance.lexicon import WORDS
from vlmalign.judges.stance.question import last_question, parse_question
from vlmalign.judges.stance.text import alternation, normalize, starts_with

_NEW_QUESTION_RE = re.compile(r"(?:^|\s|[.!?,;])(?:q|question|user|human)\s*:", re.IGNORECASE)
_ANSWER_TAG_RE = re.compile(r"^\s*(?:a|answer|assistant|response|output)\s*[:\-]\s*", re.I)
_FILLERS_RE = re.compile(rf"^(?:(?:{alternation(WORDS.fillers)})[,.!]*\s+)+(?=\w)")


def _question_echo_re(question: str, whole: bool = False) -> re.Pattern[str] | None:
    """Matches the question's opening words (or all of it), to find an echoed question."""
    words = re.findall(r"[a-z0-9]+", last_question(question).lower())
    words = [w for w in words if w not in ("q", "question")]
    words = words if whole else words[:4]
    if len(words) < 2:
        return None
    return re.compile(r"\b" + r"\W+".join(map(re.escape, words)) + r"\b", re.IGNORECASE)


def _after_echo(question: str, body: str) -> str:
    """What follows a question the model repeated at the start of its response."""
    whole = _question_echo_re(question, whole=True)
    full = whole.match(body) if whole is not None else None
    if full is not None:  # "Should I help her yes" -> "yes"
        return re.sub(r"^\s*\?*\s*", "", body[full.end() :])
    end = re.search(r"\?|\b(?:a|answer)\s*:", body)  # a paraphrased question runs to "?"
    return body[end.end() :].strip() if end else ""


def extract_answer(question: str, response: str) -> tuple[str, str]:
    """The part of the response that answers the question, and a note on what was cut."""
    text = response.strip()
    echo = _question_echo_re(question)
    note = ""
    for _ in range(3):  # "A: Q: Should I help her? A: yes" peels in a few rounds
        before = text
        text = _ANSWER_TAG_RE.sub("", text).strip()
        question_tag = re.match(r"^(?:q|question)\s*:\s*", text, re.IGNORECASE)
        body = text[question_tag.end() :] if question_tag else text
        # the asked question may follow its context sentence: "Q: She is old. Should I help her?"
        line = re.split(r"\b(?:a|answer)\s*:", body, maxsplit=1, flags=re.IGNORECASE)[0]
        found = echo.search(line) if echo is not None and question_tag else None
        if found is not None:
            body = body[found.start() :]
        if echo is not None and echo.match(body):
            text = _after_echo(question, body).strip()  # the model repeated the question
            note = "question echoed"
        elif question_tag:
            return "", "starts a new question"
        if text == before:
            break
    cut = _NEW_QUESTION_RE.search(text)
    if cut is not None:
        text = text[: cut.start()]
        note = note or "cut at a new Q:"
    if echo is not None:
        repeated = echo.search(text)
        if repeated is not None:
            text = text[: repeated.start()]
            note = note or "cut at a repeated question"
    return text.strip(" \t\n\"'-:"), note


def split_sentences(text: str) -> list[str]:
    """Sentences with their end mark kept (a trailing "?" marks a question)."""
    parts = re.findall(r"[^.!?;\n]+[.!?;\n]*", text)
    return [p.strip() for p in parts if re.search(r"[a-z0-9]", p)]


def is_new_question(sentence: str) -> bool:
    """A sentence that asks something instead of answering (and is not a rhetorical answer)."""
    if not sentence.rstrip().endswith("?"):
        return False
    if starts_with(sentence, WORDS.rhetorical_questions):
        return False
    first = sentence.split()[0].strip(",")
    return first in WORDS.auxiliaries or first in WORDS.wh_words


def _strip_fillers(text: str) -> str:
    """Drop discourse fillers in front of the answer ("Well, no." -> "no."); elongations too."""
    text = re.sub(r"\bno{2,}\b", "no", text)
    text = re.sub(r"\bye+s+\b", "yes", text)
    return _FILLERS_RE.sub("", text)


def answer_sentences(question: str, response: str) -> tuple[list[str], str]:
    """Normalized sentences of the answer proper, up to any new question the model starts."""
    answer, note = extract_answer(question, response)
    sentences: list[str] = []
    for sentence in split_sentences(_strip_fillers(normalize(answer))):
        if is_new_question(sentence):
            if not sentences and not note and _restates(question, sentence):
                note = "question restated"  # "Should I help the lady? Yes." answers after it
                continue
            if not sentences:
                return [], "answers with a question"
            break
        sentences.append(sentence)
    return sentences, note


def _restates(question: str, sentence: str) -> bool:
    """True when a question in the answer is the asked one, reworded ("help the lady")."""
    asked = parse_question(question)
    other = parse_question(sentence)
    if asked.aux != other.aux or not asked.content_lemmas:
        return False
    shared = asked.content_lemmas & other.content_lemmas
    return len(shared) * 2 >= len(asked.content_lemmas | other.content_lemmas)
