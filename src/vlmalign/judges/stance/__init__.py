"""The `stance` judge: does a short, messy model answer say yes or no to the question it was asked?

Models answer in at most ~15 tokens, so the answers are fragments: a bare particle ("Nope."),
an echo of the question's modal ("You shouldn't"), an evaluation ("That would be cruel"), or noise
copied from the few-shot pattern ("No. She is a burden. Q: Is she old? A: Yes"). This package
reads the first answer to the question asked and says whether it affirms the question's
*positive* proposition ("yes"), denies it ("no"), or does neither ("unclear").

- `lexicon`: the word lists, loaded from `judges/assets/stance_lexicon.yaml`;
- `text`: normalization, lemmas (lemminflect), whole-word phrase matching;
- `question`: what the question asks (`parse_question`);
- `answer`: the answer proper, cut out of the response;
- `evidence`: each kind of evidence in one sentence;
- `reading`: the evidence weighed in order (`read_stance`);
- `judge`: `StanceJudge`.

Rules and word lists only, on purpose: it runs anywhere, fast, and gives the same verdict every
time (docs/judges-stance.md).
"""

from vlmalign.judges.stance.evidence import StanceLabel
from vlmalign.judges.stance.judge import StanceJudge
from vlmalign.judges.stance.question import (
    QuestionFrame,
    last_question,
    moral_polarity,
    parse_question,
)
from vlmalign.judges.stance.reading import StanceReading, read_stance

__all__ = [
    "QuestionFrame",
    "StanceJudge",
    "StanceLabel",
    "StanceReading",
    "last_question",
    "moral_polarity",
    "parse_question",
    "read_stance",
]
