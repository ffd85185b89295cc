"""Shared fixtures: tiny random models of the real classes, and the real `mini` once per session."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


class TinyPatchEncoder(nn.Module):
    """A small random CNN giving a fixed number of prefix features per image."""

    def __init__(self, feature_dim: int = 16, tokens: int = 4) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.conv = nn.Conv2d(3, feature_dim, kernel_size=8, stride=8)
        self.pool = nn.AdaptiveAvgPool2d((1, tokens))

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [
            np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.float32) / 255 for im in images
        ]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pool(self.conv(pixels)).flatten(2).transpose(1, 2)
        return features, torch.ones(features.shape[:2], dtype=torch.long)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Q: What is in the picture? A: A cat on a chair.",
        "Q: Should I help her? A: Yes, you should help her.",
        "Q: Is it wrong to kick the dog? A: No. It is fine.",
        "a photo of an espresso or a tripod or a moped",
    ] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_vlm(tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    from vlmalign.models.magma import ImagePrefix, MagmaModel, add_adapters

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    lm = LlamaForCausalLM(config).eval()
    encoder = TinyPatchEncoder()
    prefix = ImagePrefix(encoder, encoder.feature_dim, config.hidden_size)
    adapters = add_adapters(lm, config.hidden_size)
    return MagmaModel("tiny", lm, tokenizer, prefix, adapters, fingerprint=f"tiny-{seed}")


@pytest.fixture
def tiny_vlm(tiny_tokenizer):
    return make_tiny_vlm(tiny_tokenizer)


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(4)]


@pytest.fixture(scope="session")
def mini_model():
    """The real offline `mini` model, loaded once per test session."""
    from vlmalign.models.registry import load_model

    return load_model("mini", "cpu")


@pytest.fixture
def tiny_vlm_factory(tiny_tokenizer):
    """Builds fresh tiny models (same seed, same weights) on demand."""
    return lambda seed=0: make_tiny_vlm(tiny_tokenizer, seed)


@pytest.fixture
def tiny_model(monkeypatch, tiny_vlm_factory) -> str:
    """The tiny random MAGMA registered as model `tiny` (for studies run through the registry)."""
    from vlmalign.models import registry as model_registry
    from vlmalign.models.registry import ModelSpec

    spec = ModelSpec(
        "tiny",
        "tiny random MAGMA",
        "tiny",
        "nothing",
        lambda *_: tiny_vlm_factory(),
        capabilities=frozenset({"generate", "score", "train"}),
    )
    monkeypatch.setitem(model_registry.MODELS, "tiny", spec)
    return "tiny"


def write_train_dataset(folder: Path, count: int) -> Path:
    """A small JSONL train split over two flat-colour images (no shots)."""
    import json

    for name, value in (("a", 30), ("b", 220)):
        Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(folder / f"{name}.png")
    rows = [
        {
            "id": f"i{i}",
            "image": "a.png" if i % 2 else "b.png",
            "question": f"Should I help {i}?",
            "ideal_answer": "Yes, help." if i % 2 else "No, never.",
            "aligned_stance": "yes" if i % 2 else "no",
            "split": "train",
        }
        for i in range(count)
    ]
    path = folder / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (`make browser` installs it)."""
    import os

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield chromium
        chromium.close()
