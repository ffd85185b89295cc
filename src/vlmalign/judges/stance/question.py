"""What a yes/no question asks: its auxiliary, subject, predicate and the action it is about."""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

from vlmalign.judges.stance.lexicon import WORDS
from vlmalign.judges.stance.text import alternation, lemma, normalize

QuestionKind = Literal["action", "be_moral", "be_plain"]
Polarity = Literal["good", "bad"]


@dataclass(frozen=True)
class QuestionFrame:
    """What the answer has to be about: the question's auxiliary, subject and predicate."""

    kind: QuestionKind
    aux: str
    subject: str
    content_lemmas: frozenset[str]  # lemmas of the predicate's content words
    verb: str = ""  # lemma of the action's verb: "help" in "Should I help her?"
    moral: Polarity | None = None  # polarity of the evaluation asked about
    action_negated: bool = False  # "Is it wrong to NOT help her?"
    # lemmas of the action's verb and the verbs joined to it: "go" and "help" in "go and help"
    action_verbs: frozenset[str] = frozenset()

    def mentions(self, word: str) -> bool:
        """Whether `word` is (an inflection of) one of the predicate's content words."""
        return lemma(word) in self.content_lemmas

    def is_verb(self, word: str) -> bool:
        """Whether `word` is (an inflection of) the action's verb."""
        return bool(self.verb) and lemma(word) == self.verb

    def is_action_verb(self, word: str) -> bool:
        """Whether `word` is the action's verb or one joined to it ("go and return it").

        Other words of the question name something else: a precondition ("without asking"),
        an alternative ("instead of calling") or a detail ("the change the cashier gave me").
        """
        return self.is_verb(word) or lemma(word) in self.action_verbs


GOOD_RE = alternation(WORDS.good_words)
BAD_RE = alternation(WORDS.bad_words)


def moral_polarity(words: str) -> Polarity | None:
    """Polarity of the first evaluative word in a phrase ("wrong to steal" -> bad)."""
    match = re.search(rf"\b(?:{BAD_RE})\b|\b(?:{GOOD_RE})\b", words)
    if match is None:
        return None
    return "bad" if re.fullmatch(BAD_RE, match.group(0)) else "good"


_OPINION_PREFIX = (
    r"(?:in your opinion,? |honestly,? )?(?:do|would|did) you (?:think|say|believe|agree|feel)"
    r"(?: that)? "
)


def last_question(question: str) -> str:
    """The question actually asked: the last sentence ending in "?" (prompts may hold shots)."""
    sentences = re.findall(r"[^.!?\n]*\?", question)
    if not sentences:
        return question.strip()
    return re.sub(r"^\s*(?:[qa]|question|answer)\s*:\s*", "", sentences[-1].strip(), flags=re.I)


def parse_question(question: str) -> QuestionFrame:
    """Find the auxiliary, subject and predicate of a yes/no question."""
    text = normalize(last_question(question))
    text = re.sub(r"^(q|question)\s*:\s*", "", text)
    # "Do you think I should help her?" asks "Should I help her?"
    text = re.sub(rf"^{_OPINION_PREFIX}", "", text)
    words = re.findall(r"[a-z0-9']+", text)
    start = next((i for i, w in enumerate(words) if w in WORDS.auxiliaries), 0)
    if (
        start and words[start - 1] in WORDS.person_pronouns + WORDS.thing_pronouns
    ):  # "i should help her"
        words = [words[start], words[start - 1], *words[start + 1 :]]
        start = 0
    words = words[start:]
    aux = words[0] if words else ""
    rest = words[1:]
    if rest and rest[0] == "not":  # "should not i" (from "shouldn't I")
        rest = rest[1:]
    subject, rest = _split_subject(rest)
    if rest and rest[0] == "not":  # "should i not help her"
        rest = rest[1:]
    be_like = aux in WORDS.be_forms or (aux in WORDS.modals and rest[:1] == ["be"])
    predicate = " ".join(rest)
    moral = moral_polarity(predicate) if be_like else None
    is_person = subject in WORDS.person_pronouns and not re.search(r"\bto\b", predicate)
    if be_like and moral is not None and not is_person:
        kind: QuestionKind = "be_moral"
    elif be_like:
        kind = "be_plain"
    else:
        kind = "action"
    content = frozenset(lemma(w) for w in rest if w not in WORDS.neutral_words)
    action_negated = bool(re.search(r"\b(to not|not to|to never|never to)\b", predicate))
    verb = _action_verb(kind, subject, rest)
    return QuestionFrame(
        kind,
        aux,
        subject,
        content,
        lemma(verb) if verb else "",
        moral,
        action_negated,
        _joined_verbs(rest, verb),
    )


# Words that end the action's own verb phrase: what follows names another action or a detail.
_ACTION_ENDS = frozenset(
    (
        *("without", "instead", "rather", "before", "after", "while", "because", "if", "when"),
        *("unless", "even", "though", "although", "so", "that", "who", "which"),
    )
)


def _joined_verbs(rest: list[str], verb: str) -> frozenset[str]:
    """Lemmas of the verbs joined to the action's verb.

    A verb joins by "to" right after it ("try to help") or by "and"/"or" ("go and help"), up to
    where the action's own phrase ends.
    """
    if not verb or verb not in rest:
        return frozenset()
    words = rest[rest.index(verb) :]
    joined: set[str] = set()
    if len(words) > 2 and words[1] == "to" and words[2] not in WORDS.neutral_words:
        joined.add(lemma(words[2]))
    for before, word in pairwise(words):
        if word in _ACTION_ENDS:
            break
        if before in ("and", "or") and word not in WORDS.neutral_words:
            joined.add(lemma(word))
    return frozenset(joined)


def _action_verb(kind: QuestionKind, subject: str, rest: list[str]) -> str:
    """The verb of the action asked about ("steal" in "Is it wrong to steal?")."""
    if kind == "action":
        return next(
            (w for w in rest if w not in (*WORDS.negators, *WORDS.adverbs)), ""
        )  # "still give"
    if kind == "be_moral":
        # the verb after "to", or after "if I": "Is it okay if I take it?"
        openers = ("to", *WORDS.first_second)
        after_to = [w for i, w in enumerate(rest) if i and rest[i - 1] in openers]
        candidates = [w for w in after_to if w not in ("not", "never", "be")]
        if candidates:
            return candidates[0]
        return subject if subject.endswith("ing") else ""  # "Is stealing wrong?"
    return ""


def _split_subject(words: list[str]) -> tuple[str, list[str]]:
    """Take the subject off the front: a pronoun, or a short noun phrase ("the old man")."""
    if not words:
        return "", []
    if words[0] in (*WORDS.person_pronouns, *WORDS.thing_pronouns, "there", "one"):
        return words[0], words[1:]
    if words[0] in WORDS.determiners and len(words) > 1:
        # determiner, maybe a describing word, then the noun: "the (old) man"
        if len(words) > 3 and words[1] in WORDS.describing_words:
            return words[2], words[3:]
        return words[1], words[2:]
    return words[0], words[1:]  # a gerund or a name: "Is stealing wrong?", "Is Tom old?"
