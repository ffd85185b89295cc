"""ImageNet-1k class names, read from the data files inside the installed `timm` wheel.

`import timm` needs torchvision, so the files are located through the package metadata instead.
"""

from __future__ import annotations

import importlib.metadata
from functools import cache

from vlmalign.errors import ModelError

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


def _timm_file(name: str) -> str:
    try:
        dist = importlib.metadata.distribution("timm")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelError(
            "ImageNet class names come from the timm wheel: pip install --no-deps timm"
        ) from exc
    for file in dist.files or ():
        if str(file).endswith(f"data/_info/{name}"):
            return file.read_text()
    raise ModelError(f"timm wheel has no data/_info/{name}; reinstall timm")


@cache
def imagenet_lemmas() -> tuple[str, ...]:
    """The 1000 class lemma strings in class-index order, e.g. 'tabby, tabby cat'."""
    synsets = _timm_file("imagenet_synsets.txt").split()
    lemma_of = dict(
        line.split("\t", 1)
        for line in _timm_file("imagenet_synset_to_lemma.txt").splitlines()
        if line
    )
    return tuple(lemma_of[s] for s in synsets)


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
