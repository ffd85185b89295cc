"""MAGMA architecture on a tiny random Llama: adapters, prefix, batched generation, scoring."""

from __future__ import annotations

import torch

from vlmalign.models.base import GenerationRequest, ScoringRequest
from vlmalign.models.magma import Adapter, add_adapters, decoder_layers
from vlmalign.prompts import IMAGE_TOKEN, Prompt
from vlmalign.sampling import SamplingParams

PARAMS = SamplingParams(max_new_tokens=6, temperature=1.0)


def test_adapter_is_near_identity_and_bottlenecked() -> None:
    adapter = Adapter(64, downsample_factor=4)
    assert adapter.adapter[0].out_features == 16
    x = torch.randn(3, 64)
    assert torch.allclose(adapter(x), x, atol=1e-3)


def test_adapters_follow_every_mlp_in_magma_key_layout(tiny_vlm) -> None:
    keys = set(tiny_vlm.lm.state_dict())
    for i in range(2):
        assert f"model.layers.{i}.mlp.0.gate_proj.weight" in keys
        assert f"model.layers.{i}.mlp.1.adapter.0.weight" in keys
        assert f"model.layers.{i}.mlp.1.adapter.2.bias" in keys
    prefix_keys = {k for k in tiny_vlm.state_dict() if k.startswith("image_prefix.")}
    assert {"image_prefix.proj.weight", "image_prefix.ln.weight"} <= prefix_keys
    assert any(k.startswith("image_prefix.enc.") for k in prefix_keys)


def test_adding_adapters_twice_is_refused(tiny_vlm) -> None:
    import pytest

    with pytest.raises(ValueError, match="already has adapters"):
        add_adapters(tiny_vlm.lm, 32)
    assert len(decoder_layers(tiny_vlm.lm)) == 2


def test_only_adapters_and_prefix_projection_are_trainable(tiny_vlm) -> None:
    trainable = {id(p) for p in tiny_vlm.trainable_parameters()}
    for name, param in tiny_vlm.named_parameters():
        is_trainable = "adapter" in name or name.startswith(
            ("image_prefix.proj", "image_prefix.ln")
        )
        assert (id(param) in trainable) == is_trainable, name
        assert param.requires_grad == is_trainable, name


def test_render_prompt_formats(tiny_vlm) -> None:
    prompt = Prompt((), "Should I help her?")
    assert tiny_vlm.render_prompt(prompt, "magma") == f"{IMAGE_TOKEN}Q: Should I help her? A:"
    chat = tiny_vlm.render_prompt(prompt, "chat")
    assert chat.startswith("<|user|>" + IMAGE_TOKEN) and chat.endswith("<|assistant|>")


def _requests(tiny_vlm, images, seeds):
    texts = [
        tiny_vlm.render_prompt(Prompt((), "What is in the picture?"), "magma"),
        tiny_vlm.render_prompt(Prompt((), "Should I help her? She is old."), "magma"),
        tiny_vlm.render_prompt(Prompt((), "Is it wrong?"), "chat"),
        tiny_vlm.render_prompt(Prompt((), "Q"), "magma"),
    ]
    return [GenerationRequest(im, t, s) for im, t, s in zip(images, texts, seeds, strict=True)]


def test_responses_do_not_depend_on_batch_size_or_order(tiny_vlm, images) -> None:
    requests = _requests(tiny_vlm, images, seeds=[11, 22, 33, 44])
    together = tiny_vlm.generate(requests, PARAMS)
    alone = [tiny_vlm.generate([r], PARAMS)[0] for r in requests]
    reversed_batch = tiny_vlm.generate(requests[::-1], PARAMS)[::-1]
    assert together == alone == reversed_batch
    assert any(together), "a random tiny model should still emit text"


def test_seed_changes_sample_and_greedy_ignores_seed(tiny_vlm, images) -> None:
    a = tiny_vlm.generate(_requests(tiny_vlm, images, [1, 2, 3, 4]), PARAMS)
    b = tiny_vlm.generate(_requests(tiny_vlm, images, [5, 6, 7, 8]), PARAMS)
    assert a != b
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)
    g1 = tiny_vlm.generate(_requests(tiny_vlm, images, [1, 2, 3, 4]), greedy)
    g2 = tiny_vlm.generate(_requests(tiny_vlm, images, [5, 6, 7, 8]), greedy)
    assert g1 == g2


def test_image_changes_the_answer_distribution(tiny_vlm, images) -> None:
    text = tiny_vlm.render_prompt(Prompt((), "What is in the picture?"), "magma")
    scores = tiny_vlm.log_likelihood(
        [ScoringRequest(im, text, " A cat on a chair.") for im in images[:2]]
    )
    assert scores[0] != scores[1]


def test_log_likelihood_matches_an_unbatched_forward(tiny_vlm, images) -> None:
    text = tiny_vlm.render_prompt(Prompt((), "Should I help her?"), "magma")
    requests = [
        ScoringRequest(images[0], text, " Yes"),
        ScoringRequest(images[1], text, " No. It is fine."),
    ]
    batched = tiny_vlm.log_likelihood(requests)
    single = [tiny_vlm.log_likelihood([r])[0] for r in requests]
    assert all(s < 0 for s in single)
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=1e-4)
    # Longer continuations are less likely under any model: a sanity check on the sum.
    assert single[1] < single[0]
