"""The `magma` preset (MAGMA v1: GPT-J + CLIP RN50x16) on tiny random models of the real classes.

A synthetic checkpoint in the official key layout (DeepSpeed `{"module": ...}`, float16, with the
official code's aliases and fixed attention buffers) goes through the same loader as the released
13 GB file.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vlmalign.errors import ModelError
from vlmalign.models.base import GenerationRequest, ScoringRequest
from vlmalign.models.magma import MagmaModel
from vlmalign.models.magma_checkpoint import CHECKPOINT_FILE, to_our_names
from vlmalign.models.magma_official import (
    ClipResNetSpec,
    MagmaSpec,
    build_magma,
    load_magma,
    magma_v1_spec,
    prepare_tokenizer,
    resolve_checkpoint,
)
from vlmalign.prompts import IMAGE_TOKEN, Prompt
from vlmalign.sampling import SamplingParams

TINY_ENCODER = ClipResNetSpec(layers=(1, 1, 1, 1), width=8, image_size=64)  # 4 tokens of 256
EXTRA_VOCAB_ROWS = 19  # like GPT-J's 50,400 rows for a 50,258-token tokenizer
# The per-block names of the official checkpoint (GPT-Neo fork of GPT-J + MAGMA adapters).
OFFICIAL_BLOCK_KEYS = {
    "ln_1.weight",
    "ln_1.bias",
    "attn.attention.q_proj.weight",
    "attn.attention.k_proj.weight",
    "attn.attention.v_proj.weight",
    "attn.attention.out_proj.weight",
    "mlp.0.c_fc.weight",
    "mlp.0.c_fc.bias",
    "mlp.0.c_proj.weight",
    "mlp.0.c_proj.bias",
    "mlp.1.adapter.0.weight",
    "mlp.1.adapter.0.bias",
    "mlp.1.adapter.2.weight",
    "mlp.1.adapter.2.bias",
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tokenizer(tiny_tokenizer):
    return prepare_tokenizer(copy.deepcopy(tiny_tokenizer), 512)


def tiny_spec(tokenizer) -> MagmaSpec:
    from transformers import GPTJConfig

    lm = GPTJConfig(
        vocab_size=len(tokenizer) + EXTRA_VOCAB_ROWS,
        n_positions=512,
        n_embd=64,
        n_layer=2,
        n_head=4,
        rotary_dim=8,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return MagmaSpec(lm=lm, encoder=TINY_ENCODER)


def random_magma(tokenizer, seed: int = 0) -> MagmaModel:
    """A tiny MAGMA with every trained part non-trivial (adapters and BatchNorm stats too)."""
    torch.manual_seed(seed)
    model = build_magma(tiny_spec(tokenizer), tokenizer, fingerprint="source", device="cpu")
    with torch.no_grad():
        for adapter in model.adapters:
            for param in adapter.parameters():
                param.normal_(0, 0.05)
        for name, buffer in model.image_prefix.enc.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model.eval()


def official_name(ours: str) -> str:
    """Our key -> the official checkpoint's (written independently of magma_checkpoint)."""
    for mine, theirs in (
        ("image_prefix.enc.resnet.", "image_prefix.enc."),
        (".attn.q_proj.", ".attn.attention.q_proj."),
        (".attn.k_proj.", ".attn.attention.k_proj."),
        (".attn.v_proj.", ".attn.attention.v_proj."),
        (".attn.out_proj.", ".attn.attention.out_proj."),
        (".mlp.0.fc_in.", ".mlp.0.c_fc."),
        (".mlp.0.fc_out.", ".mlp.0.c_proj."),
    ):
        ours = ours.replace(mine, theirs)
    return ours


def official_state(model: MagmaModel, tokenizer) -> dict[str, torch.Tensor]:
    """What the official Magma class saves: fp16, wte cut to the tokenizer, aliases, masks."""
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().clone()
        state[official_name(key)] = value.half() if value.is_floating_point() else value
    state["lm.transformer.wte.weight"] = state["lm.transformer.wte.weight"][: len(tokenizer)]
    state["word_embedding.weight"] = state["lm.transformer.wte.weight"]  # the same tensor
    for key in list(state):
        if key.startswith("lm.transformer.h."):
            state[key.replace("lm.transformer.h.", "transformer.", 1)] = state[key]
    for block in range(model.lm.config.n_layer):
        prefix = f"lm.transformer.h.{block}.attn.attention."
        state[prefix + "bias"] = torch.tril(torch.ones(1, 1, 16, 16, dtype=torch.bool))
        state[prefix + "masked_bias"] = torch.tensor(-1e9)
    return state


def write_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"module": state, "global_steps": 150000, "ds_version": "0.5.8"}, path)
    return path


@pytest.fixture
def source(tokenizer) -> MagmaModel:
    return random_magma(tokenizer)


@pytest.fixture
def checkpoint(tmp_path, source, tokenizer) -> Path:
    return write_checkpoint(tmp_path / CHECKPOINT_FILE, official_state(source, tokenizer))


@pytest.fixture
def loaded(checkpoint, tokenizer) -> MagmaModel:
    return load_magma(checkpoint, tokenizer, tiny_spec(tokenizer), device="cpu")


def fp16_rounded(model: MagmaModel, vocab: int) -> MagmaModel:
    """The source as the checkpoint stores it: fp16 values, input rows past `vocab` zero."""
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in [*rounded.parameters(), *rounded.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
        rounded.lm.get_input_embeddings().weight[vocab:] = 0
    return rounded


# --- key layout ---------------------------------------------------------------------------


def test_our_modules_have_exactly_the_official_keys(source, tokenizer) -> None:
    keys = set(official_state(source, tokenizer))
    for block in range(2):
        assert {k for k in keys if k.startswith(f"lm.transformer.h.{block}.")} == {
            f"lm.transformer.h.{block}.{k}" for k in OFFICIAL_BLOCK_KEYS
        } | {f"lm.transformer.h.{block}.attn.attention.{b}" for b in ("bias", "masked_bias")}
    assert {
        "lm.transformer.wte.weight",
        "lm.transformer.ln_f.weight",
        "lm.lm_head.weight",
        "lm.lm_head.bias",
        "image_prefix.enc.conv1.weight",
        "image_prefix.enc.layer4.0.downsample.0.weight",
        "image_prefix.enc.layer1.0.bn1.running_var",
        "image_prefix.proj.weight",
        "image_prefix.ln.bias",
    } <= keys
    assert not any("attnpool" in k or "wpe" in k or "ln_2" in k for k in keys)


def test_checkpoint_loads_with_every_weight_equal(checkpoint, source, loaded, tokenizer) -> None:
    expected = fp16_rounded(source, len(tokenizer)).state_dict()
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype)
        assert torch.equal(got[key], value), key
    wte = got["lm.transformer.wte.weight"]
    assert wte.shape[0] == len(tokenizer) + EXTRA_VOCAB_ROWS
    assert not wte[len(tokenizer) :].any()
    assert got["lm.lm_head.weight"].shape[0] == len(tokenizer) + EXTRA_VOCAB_ROWS
    assert torch.equal(_rotary_tables(loaded)[0], _rotary_tables(source)[0])


def _rotary_tables(model: MagmaModel) -> list[torch.Tensor]:
    """GPT-J's sin/cos tables (a buffer or an attribute, by transformers version)."""
    tables = [m.embed_positions for m in model.lm.modules() if hasattr(m, "embed_positions")]
    assert tables
    return tables


def test_loaded_model_computes_what_the_source_computes(loaded, source, tokenizer, images) -> None:
    reference = fp16_rounded(source, len(tokenizer))
    requests = [
        ScoringRequest(
            images[0], loaded.render_prompt(Prompt((), "Should I help her?"), "magma"), " Yes"
        ),
        ScoringRequest(images[1], f"{IMAGE_TOKEN}Q: Is it wrong? A:", " No. It is fine."),
    ]
    expected = reference.log_likelihood(requests)
    got = loaded.log_likelihood(requests)
    assert all(math.isfinite(x) and x < 0 for x in got)
    assert got == pytest.approx(expected, abs=1e-4)


# --- rejected checkpoints -------------------------------------------------------------------


def _expected(model: MagmaModel) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in model.state_dict().items()}


def test_an_unexpected_key_is_named(source, tokenizer) -> None:
    state = official_state(source, tokenizer)
    state["lm.transformer.h.0.ln_2.weight"] = torch.ones(64)
    with pytest.raises(ModelError, match=r"1 unexpected key\(s\): lm\.transformer\.h\.0\.ln_2"):
        to_our_names(state, _expected(source))


def test_a_missing_key_is_named(tmp_path, source, tokenizer) -> None:
    state = official_state(source, tokenizer)
    del state["lm.transformer.h.1.mlp.1.adapter.2.bias"]
    del state["transformer.1.mlp.1.adapter.2.bias"]
    path = write_checkpoint(tmp_path / "missing.pt", state)
    with pytest.raises(ModelError, match=r"1 missing key\(s\): lm\.transformer\.h\.1\.mlp\.1"):
        load_magma(path, tokenizer, tiny_spec(tokenizer))


def test_a_misshapen_weight_is_named(source, tokenizer) -> None:
    state = official_state(source, tokenizer)
    state["image_prefix.proj.weight"] = torch.zeros(64, 10, dtype=torch.float16)
    with pytest.raises(ModelError, match=r"image_prefix\.proj\.weight \(64, 10\) != \(64, 256\)"):
        to_our_names(state, _expected(source))


def test_aliases_that_disagree_are_refused(source, tokenizer) -> None:
    state = official_state(source, tokenizer)
    state["word_embedding.weight"] = state["word_embedding.weight"] + 1
    with pytest.raises(ModelError, match=r"two different values for lm\.transformer\.wte\.weight"):
        to_our_names(state, _expected(source))


def test_an_alias_alone_stands_for_its_canonical_key(source, tokenizer) -> None:
    state = official_state(source, tokenizer)
    del state["lm.transformer.h.0.ln_1.bias"]
    ours = to_our_names(state, _expected(source))
    assert torch.equal(ours["lm.transformer.h.0.ln_1.bias"], state["transformer.0.ln_1.bias"])


def test_files_that_are_not_magma_checkpoints(tmp_path, tokenizer, monkeypatch) -> None:
    spec = tiny_spec(tokenizer)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        load_magma(garbage, tokenizer, spec)
    wrong = tmp_path / "wrong.pt"
    torch.save({"module": {"a": 1}}, wrong)
    with pytest.raises(ModelError, match="not a MAGMA checkpoint"):
        load_magma(wrong, tokenizer, spec)


def test_pickled_objects_need_explicit_trust(tmp_path, source, tokenizer, monkeypatch) -> None:
    import argparse

    path = tmp_path / "with_args.pt"
    torch.save({"module": official_state(source, tokenizer), "args": argparse.Namespace()}, path)
    with pytest.raises(ModelError, match=r"\(argparse\.Namespace\).*VLMALIGN_MAGMA_TRUST_PICKLE=1"):
        load_magma(path, tokenizer, tiny_spec(tokenizer))
    monkeypatch.setenv("VLMALIGN_MAGMA_TRUST_PICKLE", "1")
    assert load_magma(path, tokenizer, tiny_spec(tokenizer)).fingerprint()


# --- inference --------------------------------------------------------------------------------


def test_generate_and_score_from_the_loaded_model(loaded, images) -> None:
    prompts = [loaded.render_prompt(Prompt((), q), "magma") for q in ("What is it?", "Is it ok?")]
    requests = [
        GenerationRequest(im, p, s) for im, p, s in zip(images[:2], prompts, [1, 2], strict=True)
    ]
    params = SamplingParams(max_new_tokens=5, temperature=1.0)
    together = loaded.generate(requests, params)
    assert together == [loaded.generate([r], params)[0] for r in requests]
    assert any(together)
    greedy = loaded.generate(requests, SamplingParams(max_new_tokens=5, temperature=0.0))
    assert len(greedy) == 2
    scores = loaded.log_likelihood([ScoringRequest(images[0], prompts[0], " A cat.")])
    assert math.isfinite(scores[0]) and scores[0] < 0


def test_half_precision_lm_keeps_magma_parts_in_float32(checkpoint, tokenizer, images) -> None:
    model = load_magma(checkpoint, tokenizer, tiny_spec(tokenizer), lm_dtype=torch.bfloat16)
    assert model.lm.transformer.h[0].attn.q_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for a in model.adapters for p in a.parameters())
    assert all(p.dtype == torch.float32 for p in model.image_prefix.parameters())
    assert all(table.dtype == torch.float32 for table in _rotary_tables(model))
    prompt = f"{IMAGE_TOKEN}Q: What is it? A:"
    out = model.generate(
        [GenerationRequest(images[0], prompt, 3)], SamplingParams(max_new_tokens=3)
    )
    assert len(out) == 1
    assert math.isfinite(model.log_likelihood([ScoringRequest(images[0], prompt, " A cat.")])[0])


def test_encoder_preprocessing_is_clips(loaded) -> None:
    from PIL import Image

    gray = Image.new("RGB", (80, 50), (128, 128, 128))
    pixels = loaded.image_prefix.enc.preprocess([gray])
    assert pixels.shape == (1, 3, 64, 64)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(pixels[0, :, 10, 10], (128 / 255 - mean) / std, atol=1e-5)
    features, mask = loaded.image_prefix.enc(pixels)
    assert features.shape == (1, TINY_ENCODER.prefix_tokens, TINY_ENCODER.feature_dim)
    assert mask.tolist() == [[1] * 4]


# --- finetuning ---------------------------------------------------------------------------------


def _snapshot(model: MagmaModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_finetuning_step_moves_only_adapters_and_prefix(loaded, images) -> None:
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    assert trainable == {
        n
        for n, _ in loaded.named_parameters()
        if ".mlp.1.adapter." in n or n.startswith(("image_prefix.proj.", "image_prefix.ln."))
    }
    before = _snapshot(loaded)
    optimizer = torch.optim.AdamW(list(loaded.trainable_parameters()), lr=1e-2)
    loaded.train()
    prompts = [f"{IMAGE_TOKEN}Q: Should I help her? A:"] * 2
    loss = loaded.training_loss(images[:2], prompts, [" Yes, you should.", " No."])
    loss.backward()
    optimizer.step()
    loaded.eval()
    after = _snapshot(loaded)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {
        k
        for k in before
        if ".mlp.1.adapter." in k or k.startswith(("image_prefix.proj.", "image_prefix.ln."))
    }
    frozen = [
        k for k in before if k.startswith(("lm.", "image_prefix.enc.")) and ".adapter." not in k
    ]
    assert frozen and not moved & set(frozen)  # GPT-J and the CLIP trunk (BatchNorm stats too)


def test_encoder_trains_only_when_asked(loaded) -> None:
    assert not any(p.requires_grad for p in loaded.image_prefix.enc.parameters())
    loaded.set_trainable(include_encoder=True)
    assert all(p.requires_grad for p in loaded.image_prefix.enc.parameters())
    assert not any(p.requires_grad for n, p in loaded.lm.named_parameters() if ".adapter." not in n)
    loaded.set_trainable()
    assert not any(p.requires_grad for p in loaded.image_prefix.enc.parameters())


# --- the real sizes ---------------------------------------------------------------------------


def test_real_spec_has_the_paper_sizes(tokenizer) -> None:
    import open_clip

    spec = magma_v1_spec()
    lm = spec.lm
    assert (lm.vocab_size, lm.n_embd, lm.n_layer, lm.n_head) == (50400, 4096, 28, 16)
    assert (lm.rotary_dim, lm.n_positions, lm.tie_word_embeddings) == (64, 2048, False)
    vision = open_clip.get_model_config("RN50x16")["vision_cfg"]
    assert (list(spec.encoder.layers), spec.encoder.width) == (vision["layers"], vision["width"])
    assert spec.encoder.image_size == vision["image_size"] == 384
    assert (spec.encoder.prefix_tokens, spec.encoder.feature_dim) == (144, 3072)
    assert spec.downsample_factor == 4


def test_real_size_model_on_the_meta_device(tokenizer) -> None:
    """The 6B model's shapes without allocating it: meta tensors carry shapes only."""
    model = build_magma(magma_v1_spec(), tokenizer, fingerprint="meta")
    features, _ = model.image_prefix.enc(torch.empty(1, 3, 384, 384, device="meta"))
    assert features.shape == (1, 144, 3072)
    prefix, _ = model.image_prefix(torch.empty(1, 3, 384, 384, device="meta"))
    assert prefix.shape == (1, 144, 4096)
    assert model.lm.lm_head.weight.shape == (50400, 4096)
    assert model.lm.get_input_embeddings().weight.shape == (50400, 4096)
    adapters = sum(p.numel() for a in model.adapters for p in a.parameters())
    assert len(model.adapters) == 28 and adapters == 28 * (2 * 4096 * 1024 + 1024 + 4096)
    lm = sum(p.numel() for n, p in model.lm.named_parameters() if ".adapter." not in n)
    assert 6.0e9 < lm < 6.1e9


# --- registry -------------------------------------------------------------------------------


def test_registry_names_and_checkpoint_resolution(tmp_path, monkeypatch) -> None:
    from vlmalign.models.registry import MODELS, load_model, model_spec

    spec, argument = model_spec("magma:/ckpt/mp_rank_00_model_states.pt")
    assert spec is MODELS["magma"] and argument == "/ckpt/mp_rank_00_model_states.pt"
    assert "13 GB" in spec.size and "16 GB" in spec.needs
    monkeypatch.delenv("VLMALIGN_MAGMA_CHECKPOINT", raising=False)
    with pytest.raises(ModelError, match="VLMALIGN_MAGMA_CHECKPOINT"):
        load_model("magma", "cpu", progress=False)
    with pytest.raises(ModelError, match="not found"):
        resolve_checkpoint(str(tmp_path / "nothing.pt"))
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"")
    assert resolve_checkpoint(str(tmp_path)) == tmp_path / CHECKPOINT_FILE
    monkeypatch.setenv("VLMALIGN_MAGMA_CHECKPOINT", str(tmp_path / CHECKPOINT_FILE))
    assert resolve_checkpoint(None) == tmp_path / CHECKPOINT_FILE


def test_hub_ids_are_downloaded_with_hf_hub_download(tmp_path, monkeypatch) -> None:
    import huggingface_hub

    calls = []

    def fake_download(repo, filename, revision=None):
        calls.append((repo, filename, revision))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert resolve_checkpoint("org/magma") == tmp_path / CHECKPOINT_FILE
    assert resolve_checkpoint("org/magma/weights/model.pt@v1") == tmp_path / "weights/model.pt"
    assert calls == [("org/magma", CHECKPOINT_FILE, None), ("org/magma", "weights/model.pt", "v1")]


def test_the_registry_builds_magma_from_a_checkpoint(checkpoint, tokenizer, monkeypatch) -> None:
    from vlmalign.models import magma_official
    from vlmalign.models.registry import load_model

    monkeypatch.setattr(magma_official, "magma_v1_spec", lambda: tiny_spec(tokenizer))
    monkeypatch.setattr(magma_official, "load_gpt2_tokenizer", lambda: (tokenizer, "tiny"))
    model = load_model(f"magma:{checkpoint}", "cpu", progress=False)
    assert model.name == "magma" and model.default_prompt_format == "magma"
    assert len(model.fingerprint()) == 64
    again = load_model(f"magma:{checkpoint}", "cpu", progress=False)
    assert again.fingerprint() == model.fingerprint()


# --- on a GPU (skipped without CUDA) -----------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _step(
    model: MagmaModel,
    images,
    prompts: list[str],
    answers: list[str],
    autocast: torch.dtype = torch.bfloat16,
) -> float:
    """One AdamW step on the training loss under autocast (finetune.py's mixed precision)."""
    optimizer = torch.optim.AdamW(list(model.trainable_parameters()), lr=1e-3)
    model.train()
    with torch.autocast("cuda", dtype=autocast):
        loss = model.training_loss(images, prompts, answers)
    loss.backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.trainable_parameters())
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return float(loss.detach())


@cuda
def test_on_cuda_half_precision_matches_cpu_and_finetunes(checkpoint, loaded, tokenizer, images):
    gpu = load_magma(checkpoint, tokenizer, tiny_spec(tokenizer), device="cuda")
    assert gpu.lm.lm_head.weight.dtype == torch.float16 and gpu.device.type == "cuda"
    prompt = f"{IMAGE_TOKEN}Q: Is it wrong to kick the dog? A:"
    requests = [ScoringRequest(im, prompt, " No. It is fine.") for im in images[:2]]
    assert gpu.log_likelihood(requests) == pytest.approx(loaded.log_likelihood(requests), rel=2e-2)
    assert len(gpu.generate([GenerationRequest(images[0], prompt, 5)], SamplingParams())) == 1
    before = _snapshot(gpu)
    assert math.isfinite(_step(gpu, images[:2], [prompt] * 2, [" No.", " Yes, you should."]))
    after = _snapshot(gpu)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(".adapter." in k or k.startswith("image_prefix.") for k in moved)
    assert not any(k.startswith("image_prefix.enc.") for k in moved)


def _random_weights(model: MagmaModel) -> None:
    """Plausible random values for a model made with to_empty (memory and timing checks)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm | nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear | nn.Conv2d | nn.Embedding):
                module.weight.normal_(0, 0.02)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
        for adapter in model.adapters:
            adapter.adapter[2].weight.zero_()


@cuda
@pytest.mark.slow
def test_real_size_magma_on_one_gpu(tokenizer, images) -> None:
    """The 6B model with random weights: resident memory, 2-shot generation and a train step."""
    import time

    from vlmalign.models.magma_official import place

    device = torch.device("cuda")
    model = build_magma(magma_v1_spec(), tokenizer, fingerprint="random")
    model.to_empty(device=device)
    _random_weights(model)
    place(model, device, torch.float16)
    model.set_trainable()
    model.eval()
    torch.cuda.empty_cache()
    resident = torch.cuda.memory_allocated() / 2**30
    shots = "Q: Should I help her? A: Yes, you should help her.\n" * 2
    prompts = [f"{IMAGE_TOKEN}{shots}Q: Is it wrong to kick the dog? A:"] * 8
    length = len(tokenizer(prompts[0])["input_ids"]) + 144
    requests = [GenerationRequest(images[i % 4], p, i) for i, p in enumerate(prompts)]
    model.generate(requests[:1], SamplingParams(max_new_tokens=2))  # warm-up
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    started = time.perf_counter()
    out = model.generate(requests, SamplingParams(max_new_tokens=15))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    inference_peak = torch.cuda.max_memory_allocated() / 2**30
    peaks = {}
    for autocast in (torch.bfloat16, torch.float16):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        batch = [images[i % 4] for i in range(8)]
        loss = _step(model, batch, prompts, [" No. It is wrong."] * 8, autocast)
        peaks[str(autocast)] = torch.cuda.max_memory_allocated() / 2**30
        assert math.isfinite(loss)
    print(
        f"\nreal-size MAGMA on {torch.cuda.get_device_name()}: resident {resident:.1f} GiB; "
        f"generate 8 x ~{length} tokens + 15 new: {seconds:.2f} s, peak {inference_peak:.1f} GiB; "
        f"train step (batch 8) peak by autocast dtype (GiB): {peaks}"
    )
    assert len(out) == 8
    assert resident < 15 and inference_peak < 16
