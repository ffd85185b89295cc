"""`hf:` generation on a tiny random PaliGemma: positions counted from 1, token types that
make the prompt attend both ways, no chat template. The shared decode path must answer as
transformers' own `generate()` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_hf import check_greedy_matches, check_sampling_ignores_the_batch, load_tiny

from vlmalign.models.hf import HFVisionModel

IMAGE_SIDE, PATCH = 16, 8  # 2 x 2 patches: 4 image tokens
# PaliGemma's processor calls numpy in a way numpy 2 warns about; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _save_tiny_paligemma(folder: Path, tokenizer: Any) -> Path:
    from transformers import (
        AutoTokenizer,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer_dir = folder.parent / f"{folder.name}-tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    text_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text_tokenizer.add_special_tokens({"bos_token": "<bos>"})
    text_tokenizer.chat_template = None  # PaliGemma has none: prompts are plain text
    images = SiglipImageProcessor(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    images.image_seq_length = (IMAGE_SIDE // PATCH) ** 2
    processor = PaliGemmaProcessor(image_processor=images, tokenizer=text_tokenizer)
    vocab = len(processor.tokenizer)
    config = PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIDE,
            "patch_size": PATCH,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "gemma",
            "vocab_size": vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "max_position_embeddings": 256,
            "eos_token_id": processor.tokenizer.eos_token_id,
            "pad_token_id": processor.tokenizer.pad_token_id,
            "bos_token_id": processor.tokenizer.bos_token_id,
            # wide random weights: with the default, every next token is the same newline
            "initializer_range": 1.0,
        },
        projection_dim=32,
        image_token_id=processor.image_token_id,
    )
    torch.manual_seed(0)
    PaliGemmaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def paligemma_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("paligemma") / "tiny-paligemma"
    return _save_tiny_paligemma(folder, tiny_tokenizer)


@pytest.fixture
def model(paligemma_dir: Path, monkeypatch, tmp_path) -> HFVisionModel:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    return load_tiny(paligemma_dir)


def _transformers_greedy(model: HFVisionModel, image: Any, text: str, steps: int) -> str:
    """A second implementation: transformers' own generate() on one unpadded row."""
    inputs = model.processor(
        text=[model.prompter.model_text(text)], images=[[image]], return_tensors="pt"
    )
    inputs.pop("labels", None)
    output = model.hf.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=steps,
        repetition_penalty=1.0,
        eos_token_id=model.eos_token_ids,
        pad_token_id=model.tokenizer.pad_token_id,
    )
    new = output[0, inputs["input_ids"].shape[1] :].tolist()
    stop = next((i for i, t in enumerate(new) if t in model.eos_token_ids), len(new))
    return str(model.tokenizer.decode(new[:stop], skip_special_tokens=True)).strip()


def test_greedy_generation_matches_transformers_generate(model, images) -> None:
    check_greedy_matches(model, images, _transformers_greedy)


def test_sampled_generation_does_not_depend_on_the_batch(model, images) -> None:
    check_sampling_ignores_the_batch(model, images)
