"""Image encoders that turn pictures into feature sequences for MAGMA's image prefix."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from vlmalign.models.imagenet import describe_class

log = logging.getLogger(__name__)

CAPTION_START = "A photo of"
CAPTION_JOIN = " or"
CAPTION_END = ".\n"


def center_crop_resize(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    return image.convert("RGB").crop(box).resize((size, size), Image.Resampling.BICUBIC)


class ClassifierLabelEncoder(nn.Module):
    """EfficientNet-Lite0's top ImageNet labels, spelled as tokens of the language model.

    Nothing pretrained connects images to text offline, so this encoder writes what the
    classifier sees as a short caption ("A photo of an espresso.") and emits it as one-hot
    vectors over a small "image vocabulary" (every token such a caption can use). MAGMA's
    projection, initialised from the LM's embeddings of those tokens, then turns the
    caption into prefix embeddings the LM can read; finetuning can move them.
    """

    def __init__(
        self,
        classifier: nn.Module,
        tokenizer: object,
        *,
        image_size: int = 224,
        second_label_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.classifier = classifier
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.second_label_ratio = second_label_ratio
        self._piece_cache: dict[str, list[int]] = {}
        pieces = [CAPTION_START, CAPTION_JOIN, CAPTION_END]
        pieces += [" " + describe_class(i) for i in range(1000)]
        vocab = sorted({t for piece in pieces for t in self._piece_ids(piece)})
        self.vocab_ids: torch.Tensor
        self.register_buffer("vocab_ids", torch.tensor(vocab, dtype=torch.long), persistent=False)
        self._index_of = {token: i for i, token in enumerate(vocab)}

    @property
    def feature_dim(self) -> int:
        return int(self.vocab_ids.numel())

    def _piece_ids(self, piece: str) -> list[int]:
        if piece not in self._piece_cache:
            ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
            self._piece_cache[piece] = list(ids)
        return self._piece_cache[piece]

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """EfficientNet-Lite's input: RGB in [-1, 1], center-cropped to 224 px."""
        arrays = [
            np.asarray(center_crop_resize(im, self.image_size), dtype=np.float32) for im in images
        ]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
        return (pixels - 0.5) / 0.5

    @torch.no_grad()
    def class_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.classifier.extract_features(pixels)  # type: ignore[operator]
        logits = self.classifier._fc(features.mean(dim=(2, 3)))  # type: ignore[operator]
        return logits.softmax(dim=-1)

    def captions(self, probs: torch.Tensor) -> list[list[str]]:
        """Caption pieces per image: the top label, plus the runner-up when it is close."""
        results = []
        top_p, top_i = probs.topk(2, dim=-1)
        for (p1, p2), (i1, i2) in zip(top_p.tolist(), top_i.tolist(), strict=True):
            pieces = [CAPTION_START, " " + describe_class(i1)]
            if p2 >= self.second_label_ratio * p1 and describe_class(i2) != describe_class(i1):
                pieces += [CAPTION_JOIN, " " + describe_class(i2)]
            pieces.append(CAPTION_END)
            results.append(pieces)
        return results

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot features (batch, tokens, vocab) and a mask of real tokens (batch, tokens)."""
        probs = self.class_probabilities(pixels)
        sequences = [
            [self._index_of[t] for piece in pieces for t in self._piece_ids(piece)]
            for pieces in self.captions(probs)
        ]
        length = max(len(s) for s in sequences)
        features = torch.zeros(len(sequences), length, self.feature_dim)
        mask = torch.zeros(len(sequences), length, dtype=torch.long)
        for row, sequence in enumerate(sequences):
            start = length - len(sequence)  # left-align padding so the caption ends at the prompt
            features[row, torch.arange(start, length), torch.tensor(sequence)] = 1.0
            mask[row, start:] = 1
        return features, mask
