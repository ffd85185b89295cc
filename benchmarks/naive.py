"""The naive baseline generation is measured against, written here from MAGMA's own loop.

One prompt and one sample at a time: the image goes through the model's encoder and prefix for
every request (nothing cached), the prompt's embeddings (text with the image prefix spliced in
at the image token) are prefilled with logits over the whole vocabulary at every position, then
tokens are drawn one by one with the KV cache, from a generator seeded with the request's seed
at the study's sampling parameters. It reads only the model's public modules (`lm`,
`tokenizer`, `image_prefix`, `eos_token_ids`), never its generation code.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from vlmalign.prompts import IMAGE_TOKEN
from vlmalign.sampling import SamplingParams


def _cache_keyword(lm: Any) -> str:
    # transformers renamed `past_key_values` to `cache` in its forward signatures.
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    return output["cache"] if "cache" in output else output["past_key_values"]


def draw(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """The next token from one row of logits: argmax at temperature 0, else a draw from the
    softmax at the temperature, after top-k and top-p filtering when they are on."""
    logits = logits.float()
    if params.greedy:
        return int(logits.argmax())
    scaled = logits / params.temperature
    if params.top_k > 0:
        kth = scaled.topk(min(params.top_k, scaled.numel())).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = scaled.sort(descending=True)
        cumulative = ordered.softmax(-1).cumsum(-1)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        drop = cumulative - ordered.softmax(-1) >= params.top_p
        scaled = scaled.scatter(0, order, ordered.masked_fill(drop, float("-inf")))
    probabilities = scaled.softmax(-1).cpu()
    return int(torch.multinomial(probabilities, 1, generator=generator))


def prompt_embeddings(model: Any, image: Any, prompt_text: str) -> torch.Tensor:
    """(1, length, width): text before the image token, the image prefix, the text after."""
    before, marker, after = prompt_text.partition(IMAGE_TOKEN)
    if not marker:
        raise ValueError("prompt text has no image token")
    pixels = model.image_prefix.enc.preprocess([image]).to(model.device)
    prefix, mask = model.image_prefix(pixels)
    image_embeds = prefix[0][mask[0].bool()]
    embed = model.lm.get_input_embeddings()

    def text_embeds(text: str) -> torch.Tensor:
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return embed(torch.tensor(ids, dtype=torch.long, device=model.device))

    return torch.cat([text_embeds(before), image_embeds, text_embeds(after)])[None]


@torch.inference_mode()
def naive_generate(
    model: Any, image: Any, prompt_text: str, seed: int, params: SamplingParams
) -> list[int]:
    """The new token ids of one response (end-of-sequence excluded)."""
    lm = model.lm
    generator = torch.Generator(device="cpu").manual_seed(seed)
    stop = set(model.eos_token_ids)
    vocabulary = len(model.tokenizer)  # rows past it (a padded head) decode to nothing
    cache_keyword = _cache_keyword(lm)
    output = lm(inputs_embeds=prompt_embeddings(model, image, prompt_text), use_cache=True)
    tokens: list[int] = []
    for _ in range(params.max_new_tokens):
        logits = output.logits[0, -1, :vocabulary]
        token = draw(logits, params, generator)
        if token in stop:
            break
        tokens.append(token)
        step = torch.tensor([[token]], dtype=torch.long, device=model.device)
        output = lm(input_ids=step, use_cache=True, **{cache_keyword: _returned_cache(output)})
    return tokens


def naive_response(
    model: Any, image: Any, prompt_text: str, seed: int, params: SamplingParams
) -> str:
    tokens = naive_generate(model, image, prompt_text, seed, params)
    return str(model.tokenizer.decode(tokens, skip_special_tokens=True)).strip()
