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


# --- shared checks of `hf:` generation on tiny models of other architectures ----------------
QUESTIONS = ["Should I help her?", "What?", "Is it wrong to kick the dog? Really?"]


def load_tiny(folder: Path) -> Any:
    from vlmalign.models.hf import HFVisionModel
    from vlmalign.models.registry import load_model

    loaded = load_model(f"hf:{folder}", "cpu", progress=False)
    assert isinstance(loaded, HFVisionModel)
    return loaded


def prompts_of_different_lengths(model: Any) -> list[str]:
    """One prompt per question in the model's own format (a batch of them needs padding)."""
    from vlmalign.prompts import Prompt

    return [model.render_prompt(Prompt((), q), model.default_prompt_format) for q in QUESTIONS]


def check_greedy_matches(model: Any, images: list[Any], reference: Any) -> None:
    """Greedy answers to a padded batch equal `reference(model, image, text)`, one by one."""
    from vlmalign.models.base import GenerationRequest
    from vlmalign.sampling import SamplingParams

    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    texts = prompts_of_different_lengths(model)
    requests = [GenerationRequest(images[i], texts[i], i) for i in range(len(texts))]
    expected = [reference(model, r.image, r.prompt_text, greedy.max_new_tokens) for r in requests]
    assert model.generate(requests, greedy) == expected
    assert any(expected), "a random tiny model should still emit text"


def check_sampling_ignores_the_batch(model: Any, images: list[Any]) -> None:
    """Sampled answers are the same in a batch (with two more samples of one prompt), alone,
    and in reverse order."""
    from vlmalign.models.base import GenerationRequest
    from vlmalign.sampling import SamplingParams

    sample = SamplingParams(max_new_tokens=6, temperature=1.0)
    texts = prompts_of_different_lengths(model)
    requests = [GenerationRequest(images[i], texts[i], 10 + i) for i in range(len(texts))]
    requests += [GenerationRequest(images[0], texts[0], seed) for seed in (20, 21)]
    together = model.generate(requests, sample)
    assert together == [model.generate([r], sample)[0] for r in requests]
    assert together == model.generate(requests[::-1], sample)[::-1]
