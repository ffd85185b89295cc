"""Image encoder outputs kept per image, so that a frozen encoder sees each image once.

A study asks every image under several conditions and samples, and finetuning shows it again
every epoch; the encoder's output depends only on the image and the encoder's weights. The
cache holds each image's features (before the trainable projection, which stays live) under a
key: the one the caller gives (the study's image-file sha256), else the key an earlier request
gave the same image object (finetuning reuses the images generation loaded), else a digest of
the pixels. Whoever can change the encoder's weights clears it (`MagmaModel` does when the
encoder becomes trainable and when trained encoder weights are loaded).

The cache is bounded (`max_bytes`, least recently used out first): MAGMA's CLIP RN50x16 gives
144 x 3072 floats (1.7 MB) per image, so a large study would otherwise keep gigabytes of
accelerator memory. An image pushed out is encoded again when it comes back.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from PIL import Image

# Encodes images (one per row) into one feature tensor per image: (tokens, features).
Encode = Callable[[Sequence[Image.Image]], list[torch.Tensor]]
DEFAULT_MAX_BYTES = 512 * 2**20  # about 300 MAGMA images, tens of thousands of `mini` ones


def pixel_key(image: Image.Image) -> str:
    """A digest of the decoded pixels (for images that come without a key)."""
    digest = hashlib.sha256(f"{image.mode}:{image.size}:".encode())
    digest.update(image.tobytes())
    return "pixels:" + digest.hexdigest()


class EncodedImages:
    """Encoder features by image key, and how many images the encoder has run on."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._features: OrderedDict[str, torch.Tensor] = OrderedDict()  # oldest use first
        self._bytes = 0
        # Keys callers gave, by the image object's id while that object lives.
        self._given: dict[int, str] = {}
        self.encoder_calls = 0  # images passed through the encoder, cached or not

    def __len__(self) -> int:
        return len(self._features)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._features.clear()
        self._bytes = 0

    def _keep(self, key: str, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if size > self.max_bytes:
            return  # larger than the whole cache: used once, not kept
        self._features[key] = features
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, oldest = self._features.popitem(last=False)
            self._bytes -= oldest.numel() * oldest.element_size()

    def key_of(self, image: Image.Image, given: str | None = None) -> str:
        if given is not None:
            self._remember(image, given)
            return given
        return self._given.get(id(image)) or pixel_key(image)

    def _remember(self, image: Image.Image, key: str) -> None:
        ident = id(image)
        if ident not in self._given:
            # Forget the id when the image is freed: ids are reused.
            weakref.finalize(image, self._given.pop, ident, None)
        self._given[ident] = key

    def features(
        self, images: Sequence[Image.Image], keys: Sequence[str], encode: Encode
    ) -> list[torch.Tensor]:
        """Each image's features, running `encode` on the images not cached yet (each once)."""
        found: dict[str, torch.Tensor] = {}
        missing: dict[str, Image.Image] = {}
        for image, key in zip(images, keys, strict=True):
            if key in self._features:
                found[key] = self._features[key]
                self._features.move_to_end(key)
            else:
                missing.setdefault(key, image)
        if missing:
            # Plain tensors, not inference tensors: finetuning reads them with autograd on.
            with torch.inference_mode(False), torch.no_grad():
                encoded = encode(list(missing.values()))
            self.encoder_calls += len(missing)
            for key, features in zip(missing, encoded, strict=True):
                found[key] = features.detach()
                self._keep(key, found[key])
        return [found[key] for key in keys]

    def uncached(self, images: Sequence[Image.Image], encode: Encode) -> list[torch.Tensor]:
        """Features straight from the encoder (while it trains), counted but not kept."""
        self.encoder_calls += len(images)
        return encode(images)
