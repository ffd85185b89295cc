"""MAGMA architecture on a tiny random Llama: adapters, prefix, batched generation, scoring."""

from __future__ import annotations

import pytest
import torch

from vlmalign.models.base import GenerationRequest, ScoringRequest
from vlmalign.models.magma import Adapter, add_adapters, decoder_layers
from vlmalign.prompts import IMAGE_TOKEN, Prompt
from vlmalign.sampling import SamplingParams

PARAMS = SamplingParams(max_new_tokens=6, temperature=1.0)
GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)


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


@pytest.mark.parametrize("share_prefill", [True, False], ids=["shared", "plain"])
@pytest.mark.parametrize("params", [PARAMS, GREEDY], ids=["sampled", "greedy"])
def test_responses_do_not_depend_on_batch_size_or_order(
    tiny_vlm, images, params, share_prefill
) -> None:
    tiny_vlm.share_prefill = share_prefill
    requests = _requests(tiny_vlm, images, seeds=[11, 22, 33, 44])
    requests += _chat_requests(tiny_vlm, images, seeds=[55, 66, 77])
    together = tiny_vlm.generate(requests, params)
    alone = [tiny_vlm.generate([r], params)[0] for r in requests]
    reversed_batch = tiny_vlm.generate(requests[::-1], params)[::-1]
    assert together == alone == reversed_batch
    assert any(together), "a random tiny model should still emit text"


def _chat_requests(tiny_vlm, images, seeds):
    """Chat prompts of different lengths: they share the text before the image."""
    questions = ["Is it wrong?", "Should I help her? She is old and alone.", "What?"]
    texts = [tiny_vlm.render_prompt(Prompt((), q), "chat") for q in questions]
    pairs = zip(images[1:], texts, seeds, strict=True)
    return [GenerationRequest(im, t, s) for im, t, s in pairs]


def _manual_greedy(tiny_vlm, image, text: str, steps: int) -> str:
    """A second implementation: image prefix spliced into the prompt's embeddings, the whole
    sequence through the language model at every step, no cache, no batch."""
    before, _, after = text.partition(IMAGE_TOKEN)
    embed = tiny_vlm.lm.get_input_embeddings()

    def ids(part: str) -> list[int]:
        return tiny_vlm.tokenizer(part, add_special_tokens=False)["input_ids"] if part else []

    with torch.no_grad():
        prefix, mask = tiny_vlm.image_prefix(tiny_vlm.image_prefix.enc.preprocess([image]))
        sequence = torch.cat(
            [
                embed(torch.tensor(ids(before))),
                prefix[0][mask[0].bool()],
                embed(torch.tensor(ids(after))),
            ]
        )
        new: list[int] = []
        for _ in range(steps):
            token = int(tiny_vlm.lm(inputs_embeds=sequence[None]).logits[0, -1].argmax())
            if token in tiny_vlm.eos_token_ids:
                break
            new.append(token)
            sequence = torch.cat([sequence, embed(torch.tensor([token]))])
    return tiny_vlm.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_greedy_batch_with_shared_prompts_matches_a_loop_without_cache(tiny_vlm, images) -> None:
    requests = _chat_requests(tiny_vlm, images, seeds=[1, 2, 3])
    requests += [GenerationRequest(r.image, r.prompt_text, 9) for r in requests]
    expected = [
        _manual_greedy(tiny_vlm, r.image, r.prompt_text, GREEDY.max_new_tokens) for r in requests
    ]
    assert tiny_vlm.generate(requests, GREEDY) == expected


@pytest.mark.parametrize("params", [PARAMS, GREEDY], ids=["sampled", "greedy"])
def test_samples_sharing_a_prefill_draw_as_separate_requests(tiny_vlm, images, params) -> None:
    text = tiny_vlm.render_prompt(Prompt((), "Should I help her?"), "chat")
    samples = [GenerationRequest(images[0], text, seed) for seed in range(100, 105)]
    other = GenerationRequest(images[1], text, 7)
    shared = tiny_vlm.generate([*samples, other], params)
    assert shared[:5] == [tiny_vlm.generate([r], params)[0] for r in samples]
    if params is PARAMS:
        assert len(set(shared[:5])) > 1  # each sample keeps its own seed


def test_prefill_projects_one_position_onto_the_vocabulary(tiny_vlm, images) -> None:
    positions = []
    head = tiny_vlm.lm.get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, _a, out: positions.append(out.shape[1]))
    try:
        tiny_vlm.generate(_chat_requests(tiny_vlm, images, [1, 2, 3]), GREEDY)
    finally:
        hook.remove()
    assert positions and set(positions) == {1}


# --- image features once ---------------------------------------------------------------------
def _encoded_images(tiny_vlm) -> list[int]:
    """Images the encoder runs on, counted by a hook (independently of the model's counter)."""
    seen: list[int] = []
    tiny_vlm.image_prefix.enc.register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].shape[0])
    )
    return seen


def test_each_image_is_encoded_once_over_generate_calls(tiny_vlm, images) -> None:
    seen = _encoded_images(tiny_vlm)
    texts = [tiny_vlm.render_prompt(Prompt((), q), "chat") for q in ("Why?", "Is it fine?")]
    first = [
        GenerationRequest(images[i % 2], texts[i // 2], seed=i, image_key=f"sha-{i % 2}")
        for i in range(4)
    ]
    before = tiny_vlm.generate(first, PARAMS)
    # Another call: same images under their keys, in new objects (as a study reloads them).
    again = [
        GenerationRequest(r.image.copy(), r.prompt_text, r.seed, image_key=r.image_key)
        for r in first
    ]
    assert tiny_vlm.generate(again, PARAMS) == before
    assert sum(seen) == 2 == tiny_vlm.encoder_calls
    # Without a key, the objects a keyed request showed (finetuning reuses the study's images)
    tiny_vlm.log_likelihood([ScoringRequest(first[0].image, texts[0], " Yes")])
    tiny_vlm.training_loss([first[1].image], [texts[0]], ["Yes."])
    assert sum(seen) == 2
    # and images with equal pixels share one encoding.
    for copy in (images[2].copy(), images[2].copy()):
        tiny_vlm.generate([GenerationRequest(copy, texts[1], 5)], PARAMS)
    assert sum(seen) == 3 == tiny_vlm.encoder_calls


def test_the_cache_is_dropped_when_the_encoder_can_change(tiny_vlm, images) -> None:
    seen = _encoded_images(tiny_vlm)
    request = GenerationRequest(images[0], tiny_vlm.render_prompt(Prompt((), "Q"), "chat"), 1)
    tiny_vlm.generate([request], GREEDY)
    tiny_vlm.set_trainable(include_encoder=True)
    tiny_vlm.training_loss([images[0]], [request.prompt_text], ["Yes."]).backward()
    tiny_vlm.generate([request], GREEDY)  # still trainable: encoded again, not kept
    assert sum(seen) == 3
    tiny_vlm.set_trainable()
    tiny_vlm.generate([request], GREEDY)
    tiny_vlm.generate([request], GREEDY)
    assert sum(seen) == 4
    state = {k: v for k, v in tiny_vlm.state_dict().items() if k.startswith("image_prefix.enc.")}
    tiny_vlm.load_trainable_state_dict(state, adapter_hash="with-encoder")
    tiny_vlm.generate([request], GREEDY)
    assert sum(seen) == 5
    # Adapters and the prefix projection alone leave the encoder's outputs valid.
    tiny_vlm.load_trainable_state_dict(tiny_vlm.trainable_state_dict(), adapter_hash="adapters")
    tiny_vlm.generate([request], GREEDY)
    assert sum(seen) == 5


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
