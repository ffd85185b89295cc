"""The per-image encoding cache: each image encoded once, keys, and a bounded size."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from vlmalign.models.image_features import EncodedImages, pixel_key

FLOATS = 4  # bytes of a float32


class CountingEncoder:
    """Encodes an image as 3 tokens of 2 features from its mean colour; counts what it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        self.seen.append(len(images))
        return [torch.full((3, 2), float(np.asarray(im).mean())) for im in images]


def _image(value: int) -> Image.Image:
    return Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8))


def test_each_key_is_encoded_once_and_repeats_in_a_call_share_one_encoding() -> None:
    cache, encode = EncodedImages(), CountingEncoder()
    a, b = _image(10), _image(20)
    first = cache.features([a, b, a], ["a", "b", "a"], encode)
    assert encode.seen == [2] and cache.encoder_calls == 2
    assert [float(f[0, 0]) for f in first] == [10.0, 20.0, 10.0]
    again = cache.features([b, a], ["b", "a"], encode)
    assert encode.seen == [2] and torch.equal(again[1], first[0])
    assert cache.cached_bytes == 2 * 3 * 2 * FLOATS


def test_the_least_recently_used_image_goes_first_when_the_cache_is_full() -> None:
    one_image = 3 * 2 * FLOATS
    cache, encode = EncodedImages(max_bytes=2 * one_image), CountingEncoder()
    images = {key: _image(value) for key, value in [("a", 1), ("b", 2), ("c", 3)]}

    def ask(*keys: str) -> None:
        cache.features([images[k] for k in keys], list(keys), encode)

    ask("a", "b")
    ask("a")  # a is now the most recent
    ask("c")  # full: b goes
    assert len(cache) == 2 and cache.cached_bytes == 2 * one_image
    ask("a", "c")
    assert cache.encoder_calls == 3  # a and c still cached
    ask("b")
    assert cache.encoder_calls == 4  # b was pushed out, so it is encoded again


def test_features_larger_than_the_cache_are_used_but_not_kept() -> None:
    cache, encode = EncodedImages(max_bytes=8), CountingEncoder()
    assert float(cache.features([_image(5)], ["x"], encode)[0][0, 0]) == 5.0
    assert len(cache) == 0 and cache.cached_bytes == 0


def test_images_without_a_key_are_known_by_their_pixels_or_an_earlier_key() -> None:
    cache = EncodedImages()
    image = _image(7)
    assert cache.key_of(image) == pixel_key(_image(7)) != pixel_key(_image(8))
    assert cache.key_of(image, "sha-7") == "sha-7"
    assert cache.key_of(image) == "sha-7"  # the same object, shown before under its key
    cache.clear()
    assert len(cache) == 0 and cache.cached_bytes == 0
