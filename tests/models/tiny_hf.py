"""A tiny random LLaVA (real classes: CLIP vision tower + Llama) saved as a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# Content parts as processors pass them: {"type": "image"} / {"type": "text", "text": ...}.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
IMAGE_SIDE, PATCH = 16, 8  # 4 patches + CLS; "default" feature selection drops CLS: 4 tokens


def tiny_processor(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaProcessor

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)  # a fresh copy to add tokens to
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIDE}, crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    )
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def save_tiny_llava(folder: Path, tokenizer: Any, seed: int = 0) -> Path:
    """Write processor + random weights; the generation config asks for sampling with a
    repetition penalty, which vlmalign must override with its own SamplingParams."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    from transformers import LlavaForConditionalGeneration as Llava

    tokenizer_dir = folder.parent / f"{folder.name}-tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    processor = tiny_processor(tokenizer_dir)
    vocab = len(processor.tokenizer)
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIDE,
        patch_size=PATCH,
        projection_dim=16,
    )
    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=processor.tokenizer.eos_token_id,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = Llava(config)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.3
    model.generation_config.repetition_penalty = 3.0
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
