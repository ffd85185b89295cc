"""The stance judge's word lists, read from `judges/assets/stance_lexicon.yaml`.

The lists are data, not code: the file says what each list is for. They are validated when
loaded (an unknown or missing list is an error), so a typo in the file fails loudly.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

LEXICON_FILE = "stance_lexicon.yaml"
Words = tuple[str, ...]


class Lexicon(BaseModel):
    """Every word list the stance judge matches, on normalized text (see `text.normalize`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # grammar words
    be_forms: Words
    modals: Words
    do_forms: Words
    have_forms: Words
    linking_verbs: Words
    semi_modals: Words
    person_pronouns: Words
    first_second: Words
    thing_pronouns: Words
    generic_persons: Words
    negative_subjects: Words
    negators: Words
    determiners: Words
    describing_words: Words
    adverbs: Words
    pro_verbs: Words
    clause_enders: Words
    wh_words: Words
    contentless_words: Words
    # evaluations of an action
    good_words: Words
    bad_words: Words
    # particles, idioms and fillers
    no_particles: Words
    yes_particles: Words
    no_continuations: Words
    standalone_only: Words
    fillers: Words
    agreements: Words
    disagreements: Words
    approving_idioms: Words
    condemning_idioms: Words
    # advice for or against the action, at a sentence's start
    refusing_advice: Words
    endorsing_advice: Words
    advice_tails: Words
    # answers that take no position
    refusals: Words
    hedges: Words
    mixed: Words
    rhetorical_questions: Words
    contractions: dict[str, str]

    @cached_property
    def auxiliaries(self) -> Words:
        return self.be_forms + self.modals + self.do_forms + self.have_forms

    @cached_property
    def neutral_words(self) -> frozenset[str]:
        """Words that carry no content when matching an answer's words to the question's."""
        return frozenset(
            (
                *self.contentless_words,
                *self.auxiliaries,
                *self.person_pronouns,
                *self.thing_pronouns,
                *self.negators,
            )
        )


def load_lexicon(path: Path | None = None) -> Lexicon:
    """The lexicon in `path`, by default the one shipped with the package."""
    if path is None:
        text = (resources.files("vlmalign.judges") / "assets" / LEXICON_FILE).read_text("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return Lexicon.model_validate(yaml.safe_load(text))


#: The shipped lexicon, loaded once.
WORDS = load_lexicon()
