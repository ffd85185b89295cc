"""ImageNet-1k (ILSVRC-2012) class names and the short noun phrases `mini` captions with.

`imagenet_labels.txt` lists, in class-index order, the WordNet lemmas of the 1000 ILSVRC-2012
synsets (Deng et al., 2009; Miller, 1995), one class per line. It is a plain list of facts kept
with the package, so that no other image library has to be installed to read it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

# Coarse names for ImageNet index ranges whose fine names do not say what the thing is
# ("papillon" is a dog, "daisy" a flower): the prefix then reads "a dog (papillon)".
_COARSE_RANGES: tuple[tuple[int, int, str], ...] = (
    (0, 6, "fish"),
    (7, 24, "bird"),
    (52, 68, "snake"),
    (80, 100, "bird"),
    (127, 146, "bird"),
    (151, 268, "dog"),
    (281, 285, "cat"),
    (300, 320, "insect"),
    (321, 326, "butterfly"),
    (369, 384, "monkey"),
    (389, 397, "fish"),
    (985, 986, "flower"),
)


@cache
def imagenet_lemmas() -> tuple[str, ...]:
    """The 1000 class lemma strings in class-index order, e.g. 'tabby, tabby cat'."""
    text = (resources.files("vlmalign.models") / "imagenet_labels.txt").read_text()
    lemmas = tuple(line for line in text.splitlines() if line)
    if len(lemmas) != 1000:
        raise RuntimeError(f"imagenet_labels.txt has {len(lemmas)} classes, expected 1000")
    return lemmas


def coarse_name(index: int) -> str | None:
    for low, high, name in _COARSE_RANGES:
        if low <= index <= high:
            return name
    return None


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def describe_class(index: int) -> str:
    """A short noun phrase for a class: 'an espresso', 'a dog (papillon)'."""
    fine = imagenet_lemmas()[index].split(",")[0].strip()
    coarse = coarse_name(index)
    if coarse is None or coarse in fine.lower():
        return f"{_article(fine)} {fine}"
    return f"{_article(coarse)} {coarse} ({fine})"
