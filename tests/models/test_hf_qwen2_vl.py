"""`hf:` generation on a tiny random Qwen2-VL: a model that computes its own (multimodal
rotary) positions, so the shared decode path must carry them from prefill into every step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_hf import check_greedy_matches, check_sampling_ignores_the_batch, load_tiny

from vlmalign.models.hf import HFVisionModel

VISION_TOKENS = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _save_tiny_qwen2_vl(folder: Path, tokenizer: Any) -> Path:
    from transformers import (
        AutoTokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer_dir = folder.parent / f"{folder.name}-tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    text_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    text_tokenizer.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    # 28 x 28 pixels = 2 x 2 patches of 14, merged 2 x 2: one image token per image.
    images = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=28 * 28)
    processor = Qwen2VLProcessor(
        image_processor=images,
        tokenizer=text_tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    ids = {token: text_tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(text_tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256,
            # mrope sections (temporal, height, width) over half the head dimension (8 / 2)
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 1, 1]},
            "eos_token_id": text_tokenizer.eos_token_id,
            "pad_token_id": text_tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def qwen_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    return _save_tiny_qwen2_vl(tmp_path_factory.mktemp("qwen") / "tiny-qwen2-vl", tiny_tokenizer)


@pytest.fixture
def model(qwen_dir: Path, monkeypatch, tmp_path) -> HFVisionModel:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    return load_tiny(qwen_dir)


def _greedy_without_cache(model: HFVisionModel, image: Any, text: str, steps: int) -> str:
    """A second implementation: the whole sequence through the model at every step, one row,
    no cache, positions left to the model."""
    inputs = model.processor(
        text=[model.prompter.model_text(text)], images=[[image]], return_tensors="pt"
    )
    ids, types = inputs["input_ids"], inputs["mm_token_type_ids"]  # 1 marks image tokens
    new: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model.hf(
                input_ids=ids,
                mm_token_type_ids=types,
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
                use_cache=False,
            ).logits[0, -1]
            token = int(logits.argmax())
            if token in model.eos_token_ids:
                break
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            types = torch.cat([types, torch.zeros((1, 1), dtype=types.dtype)], dim=1)
    return str(model.tokenizer.decode(new, skip_special_tokens=True)).strip()


def test_greedy_generation_matches_a_loop_without_cache(model, images) -> None:
    check_greedy_matches(model, images, _greedy_without_cache)


def test_sampled_generation_does_not_depend_on_the_batch(model, images) -> None:
    check_sampling_ignores_the_batch(model, images)
