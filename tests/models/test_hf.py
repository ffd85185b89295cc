"""`hf:` models on a tiny random LLaVA saved to disk and loaded through the Auto* classes:
prompts, batched generation, scoring, loss masking, LoRA finetuning and adapters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import write_train_dataset
from tiny_hf import save_tiny_llava

from vlmalign.config import FinetuneConfig
from vlmalign.data.dataset import load_dataset
from vlmalign.data.schema import Shot
from vlmalign.errors import ModelError
from vlmalign.finetune import ADAPTER_DIR, finetune
from vlmalign.models.adapters import CARD_FILE, PEFT_WEIGHTS_FILE, WEIGHTS_FILE, load_adapter
from vlmalign.models.base import GenerationRequest, Generator, Scorer, ScoringRequest, Trainable
from vlmalign.models.hf import HFVisionModel, Source, fingerprint_of, hub_commit
from vlmalign.models.registry import load_model
from vlmalign.prompts import IMAGE_TOKEN, Prompt
from vlmalign.sampling import SamplingParams

SAMPLE = SamplingParams(max_new_tokens=6, temperature=1.0)
GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)
FAST = FinetuneConfig(epochs=2, batch_size=2, lr=2e-2, warmup_ratio=0.0, mixed_precision="no")
SHOT = Shot(question="What is it?", answer="A cat.")
LM = "model.language_model."
PEFT_PREFIX = "base_model.model."  # peft saves weights by the names inside its PeftModel
LORA_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path_factory) -> None:
    """Folder fingerprints remember file hashes in the cache: keep the user's clean."""
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path_factory.getbasetemp() / "vlmalign-cache"))


@pytest.fixture(scope="module")
def hf_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("hf") / "tiny-llava", tiny_tokenizer)


@pytest.fixture(scope="module")
def other_hf_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    """Same architecture, other random weights: another base model."""
    return save_tiny_llava(tmp_path_factory.mktemp("hf") / "other", tiny_tokenizer, seed=1)


@pytest.fixture
def model(hf_dir: Path) -> HFVisionModel:
    loaded = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    assert isinstance(loaded, HFVisionModel)
    return loaded


@pytest.fixture
def dataset(tmp_path: Path):
    return load_dataset(write_train_dataset(tmp_path, 4))


def _prompts(model: HFVisionModel) -> list[str]:
    """Prompts of different lengths, so that batches need padding."""
    questions = ["Should I help her?", "What?", "Is it wrong to kick the dog? Really?", "Q"]
    return [model.render_prompt(Prompt((), q), "chat") for q in questions]


# --- loading and identity ----------------------------------------------------------------------
def test_a_saved_folder_loads_through_the_registry(model, hf_dir, other_hf_dir) -> None:
    assert all(isinstance(model, role) for role in (Generator, Scorer, Trainable))
    assert type(model.hf).__name__ == "LlavaForConditionalGeneration"
    assert model.name == f"hf:{hf_dir}" and model.default_prompt_format == "chat"
    assert not model.encoder_trainable and model.adapter_hash() is None
    again = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    other = load_model(f"hf:{other_hf_dir}", "cpu", progress=False)
    assert again.fingerprint() == model.fingerprint() != other.fingerprint()


def test_a_hub_id_is_fingerprinted_by_its_cached_commit(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the network
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert hub_commit("org/tiny", None, cache_dir=str(tmp_path)) == commit
    assert hub_commit("org/tiny", commit, cache_dir=str(tmp_path)) == commit
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        hub_commit("org/absent", None, cache_dir=str(tmp_path))
    first, later = Source("org/tiny", commit), Source("org/tiny", "f" * 40)
    assert fingerprint_of(first) == fingerprint_of(first) != fingerprint_of(later)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hf", "needs hub id"),
        ("hf:/no/such/folder", "no such folder"),
        ("hf:just-a-name", "not a hub id"),
    ],
)
def test_bad_hf_names_are_one_line_errors(name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_model(name, "cpu", progress=False)


# --- prompts ------------------------------------------------------------------------------------
def test_prompts_render_shots_inline_or_as_turns(model) -> None:
    prompt = Prompt((SHOT,), "Should I help her?")
    inline = model.render_prompt(prompt, "chat")
    assert inline == model.render_prompt(prompt, "chat", "inline")
    assert inline == (
        f"<|user|>{IMAGE_TOKEN}Q: What is it? A: A cat.\nQ: Should I help her? A:</s><|assistant|>"
    )
    assert model.render_prompt(prompt, "chat", "turns") == (
        f"<|user|>{IMAGE_TOKEN}What is it?</s><|assistant|>A cat.</s>"
        "<|user|>Should I help her?</s><|assistant|>"
    )
    assert model.render_prompt(prompt, "magma") == prompt.magma_text()
    # The generation prompt ends without a space: answers start with one.
    assert model.render_answer("Yes.", "chat") == " Yes."
    assert model.render_answer("Yes.", "magma") == " Yes."


def test_the_image_marker_becomes_the_processors_placeholder(model) -> None:
    text = model.render_prompt(Prompt((), "Q"), "chat")
    assert model.prompter.model_text(text) == "<|user|><image>Q: Q A:</s><|assistant|>"
    ids = model._encode([Image.new("RGB", (20, 30))], [text])["input_ids"][0]
    assert int((ids == model.image_token_id).sum()) == 4  # (16 / 8)² patches
    with pytest.raises(ValueError, match="exactly once"):
        model.prompter.model_text("no image here")


def test_a_processor_without_chat_template_uses_the_magma_format(hf_dir) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(hf_dir)
    processor.chat_template = None  # as PaliGemma's
    bare = HFVisionModel(
        "bare", AutoModelForImageTextToText.from_pretrained(hf_dir), processor, fingerprint="x"
    )
    assert bare.default_prompt_format == "magma"
    with pytest.raises(ValueError, match="no chat template"):
        bare.render_prompt(Prompt((), "Q"), "chat")
    text = bare.render_prompt(Prompt((), "Q"), "magma")
    assert bare.prompter.model_text(text) == "<image>Q: Q A:"
    assert len(bare.generate([GenerationRequest(Image.new("RGB", (9, 9)), text, 0)], GREEDY)) == 1


# --- generation and scoring -----------------------------------------------------------------
@pytest.mark.parametrize("share_prefill", [True, False], ids=["shared", "plain"])
@pytest.mark.parametrize("params", [SAMPLE, GREEDY], ids=["sampled", "greedy"])
def test_generation_does_not_depend_on_batch_size_or_order(
    model, images, params, share_prefill
) -> None:
    model.share_prefill = share_prefill
    requests = [
        GenerationRequest(image, text, seed)
        for image, text, seed in zip(images, _prompts(model), [11, 22, 33, 44], strict=True)
    ]
    requests += [GenerationRequest(r.image, r.prompt_text, r.seed + 100) for r in requests[:2]]
    batched = model.generate(requests, params)
    assert batched == [model.generate([r], params)[0] for r in requests]
    assert batched == model.generate(requests[::-1], params)[::-1]
    if params is SAMPLE:  # seeds matter
        reseeded = [GenerationRequest(r.image, r.prompt_text, r.seed + 1) for r in requests]
        assert model.generate(reseeded, params) != batched


@pytest.mark.parametrize("params", [SAMPLE, GREEDY], ids=["sampled", "greedy"])
def test_samples_sharing_a_prefill_draw_as_separate_requests(model, images, params) -> None:
    text = _prompts(model)[0]
    samples = [GenerationRequest(images[0], text, seed) for seed in range(100, 105)]
    shared = model.generate([*samples, GenerationRequest(images[1], text, 7)], params)
    assert shared[:5] == [model.generate([r], params)[0] for r in samples]
    if params is SAMPLE:
        assert len(set(shared[:5])) > 1  # each sample keeps its own seed


def test_a_prompt_is_prefilled_once_with_one_position_projected(model, images) -> None:
    """Five samples of one prompt: the vision tower sees the image once, and the vocabulary
    projection runs on one position per row (prefill and every step)."""
    images_seen: list[int] = []
    positions: list[int] = []
    tower = model.hf.model.vision_tower.register_forward_hook(
        lambda _m, args, _out: images_seen.append(args[0].shape[0])
    )
    head = model.hf.get_output_embeddings().register_forward_hook(
        lambda _m, _a, out: positions.append(out.shape[1])
    )
    try:
        text = _prompts(model)[1]
        model.generate([GenerationRequest(images[0], text, s) for s in range(5)], GREEDY)
    finally:
        tower.remove()
        head.remove()
    assert images_seen == [1] and model.encoder_calls == 1
    assert positions and set(positions) == {1}


def _manual_inputs(model: HFVisionModel, image: Image.Image, text: str, tail: list[int]):
    """One unpadded row: the processor's prompt + the continuation ids."""
    inputs = model.processor(
        text=[model.prompter.model_text(text)], images=[[image]], return_tensors="pt"
    )
    ids = torch.cat([inputs["input_ids"], torch.tensor([tail], dtype=torch.long)], dim=1)
    return ids, inputs["pixel_values"]


def test_greedy_generation_matches_a_manual_greedy_loop(model, images) -> None:
    """The model's generation config asks for sampling + a repetition penalty: ignored."""
    text = _prompts(model)[0]
    ids, pixels = _manual_inputs(model, images[0], text, [])
    new: list[int] = []
    with torch.no_grad():
        for _ in range(GREEDY.max_new_tokens):
            logits = model.hf(input_ids=ids, pixel_values=pixels).logits[0, -1]
            token = int(logits.argmax())
            if token in model.eos_token_ids:
                break
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    expected = model.tokenizer.decode(new, skip_special_tokens=True).strip()
    assert model.generate([GenerationRequest(images[0], text, 0)], GREEDY) == [expected]


def test_log_likelihood_matches_a_manual_forward(model, images) -> None:
    texts = _prompts(model)
    answers = [" Yes, help.", " No.", " A cat on a chair.", " Yes"]
    requests = [ScoringRequest(im, t, a) for im, t, a in zip(images, texts, answers, strict=True)]
    batched = model.log_likelihood(requests)
    for request, score in zip(requests, batched, strict=True):
        tail = model._token_ids(request.continuation)
        ids, pixels = _manual_inputs(model, request.image, request.prompt_text, tail)
        with torch.no_grad():
            logprobs = model.hf(input_ids=ids, pixel_values=pixels).logits[0].log_softmax(-1)
        start = ids.shape[1] - len(tail)
        expected = sum(float(logprobs[start - 1 + i, t]) for i, t in enumerate(tail))
        assert score == pytest.approx(expected, abs=1e-4)
    assert batched == [model.log_likelihood([r])[0] for r in requests]


def test_answer_loss_covers_answer_and_end_of_sequence_only(model, images) -> None:
    text = _prompts(model)[0]
    answer = model.render_answer("Yes, help her.", "chat")
    tail = [*model._token_ids(answer), model.tokenizer.eos_token_id]
    ids, pixels = _manual_inputs(model, images[0], text, tail)
    with torch.no_grad():
        logprobs = model.hf(input_ids=ids, pixel_values=pixels).logits[0].log_softmax(-1)
        picked = logprobs[:-1].gather(-1, ids[0, 1:, None])[:, 0]
        answer_loss = model.training_loss(images[:1], [text], [answer], "answer")
        caption_loss = model.training_loss(images[:1], [text], [answer], "caption")
    assert float(answer_loss) == pytest.approx(float(-picked[-len(tail) :].mean()), abs=1e-5)
    # Caption mode scores every text token but the image's placeholders.
    text_targets = ids[0, 1:] != model.image_token_id
    assert float(caption_loss) == pytest.approx(float(-picked[text_targets].mean()), abs=1e-5)


# --- LoRA -------------------------------------------------------------------------------------
def test_lora_adapts_the_language_models_projections_only(model) -> None:
    model.set_trainable()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapted = {n.split(".lora_")[0] for n in trainable}
    assert trainable and all(".lora_" in n and n.startswith(f"hf.{LM}") for n in trainable)
    assert {a.rsplit(".", 1)[-1] for a in adapted} == LORA_TARGETS
    assert len(adapted) == 2 * len(LORA_TARGETS)  # every projection of both layers
    state = model.trainable_state_dict()
    # peft's saved names: its wrapper's prefix, without the adapter's name ("default").
    assert set(state) == {
        PEFT_PREFIX + n.removeprefix("hf.").replace(".default.", ".") for n in trainable
    }
    assert all(k.startswith(PEFT_PREFIX + LM) for k in state)
    # LoRA starts as the identity: B = 0.
    assert all(not v.any() for k, v in state.items() if ".lora_B." in k)
    with pytest.raises(ModelError, match="vision tower"):
        model.set_trainable(include_encoder=True)


def test_lora_weights_stay_float32_under_a_bf16_model(hf_dir, images) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    weights = AutoModelForImageTextToText.from_pretrained(hf_dir, dtype=torch.bfloat16)
    half = HFVisionModel("half", weights, AutoProcessor.from_pretrained(hf_dir), fingerprint="h")
    assert {p.dtype for p in half.trainable_parameters()} == {torch.float32}
    text = half.render_prompt(Prompt((), "Q"), "chat")
    loss = half.training_loss(images[:2], [text, text], [" Yes.", " No."])
    loss.backward()
    assert all(
        p.grad is not None and p.grad.dtype == torch.float32 for p in half.trainable_parameters()
    )
    assert half.generate([GenerationRequest(images[0], text, 1)], GREEDY)[0] is not None


def test_finetuning_moves_lora_only_and_the_adapter_reloads(
    model, hf_dir, dataset, tmp_path, images
) -> None:
    base = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    before = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    card = finetune(model, dataset, tmp_path / "run", FAST, progress=False)
    moved = {
        n for n, p in model.hf.named_parameters() if n in before and not torch.equal(p, before[n])
    }
    assert not moved, moved  # vision tower, projector and LM weights untouched
    state = model.trainable_state_dict()
    assert all(state[k].any() for k in state if ".lora_B." in k)  # every LoRA layer learned
    adapter = tmp_path / "run" / ADAPTER_DIR
    assert (adapter / PEFT_WEIGHTS_FILE).is_file() and (adapter / CARD_FILE).is_file()
    assert (adapter / "adapter_config.json").is_file() and not (adapter / WEIGHTS_FILE).exists()
    from safetensors.torch import load_file

    assert set(load_file(str(adapter / PEFT_WEIGHTS_FILE))) == set(state)
    settings = card.adapter_settings
    assert settings == model.adapter_settings() and set(settings["targets"]) == LORA_TARGETS
    assert (settings["type"], settings["r"], settings["alpha"]) == ("lora", 16, 32)
    assert card.epoch_losses[1].loss < card.epoch_losses[0].loss

    fresh = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    loaded = load_adapter(fresh, adapter)
    assert (
        fresh.adapter_hash() == loaded.adapter_hash
        and fresh.fingerprint() == card.base_model_fingerprint
    )
    texts = _prompts(model)
    requests = [GenerationRequest(im, t, 5) for im, t in zip(images, texts, strict=True)]
    model.eval()
    assert fresh.generate(requests, SAMPLE) == model.generate(requests, SAMPLE)
    scoring = [ScoringRequest(images[0], texts[0], " No, never.")]
    assert fresh.log_likelihood(scoring) == model.log_likelihood(scoring)
    assert base.log_likelihood(scoring) != fresh.log_likelihood(scoring)


def test_the_adapter_folder_is_what_peft_itself_loads(
    model, hf_dir, dataset, tmp_path, images
) -> None:
    """An independent reader of the format: peft's PeftModel.from_pretrained on the base."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    finetune(model, dataset, tmp_path / "run", FAST, progress=False)
    model.eval()
    ids, pixels = _manual_inputs(model, images[0], _prompts(model)[0], [5, 6, 7])
    base = AutoModelForImageTextToText.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        base_logits = base(input_ids=ids, pixel_values=pixels).logits
        theirs = PeftModel.from_pretrained(base, tmp_path / "run" / ADAPTER_DIR).eval()
        peft_logits = theirs(input_ids=ids, pixel_values=pixels).logits
        our_logits = model.hf(input_ids=ids, pixel_values=pixels).logits
    assert not torch.allclose(base_logits, our_logits, atol=1e-4)  # the adapter matters
    assert torch.allclose(peft_logits, our_logits, atol=1e-6)


def test_adapters_saved_before_peft_layout_still_load(model, hf_dir, tmp_path, images) -> None:
    """Older adapters hold `adapter.safetensors` with the LoRA names without peft's prefix."""
    from vlmalign.models.adapters import save_adapter

    state = {k: torch.randn_like(v) for k, v in model.trainable_state_dict().items()}
    model.load_trainable_state_dict(state, None)
    old_names = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}
    card = {"base_model": model.name, "base_model_fingerprint": model.fingerprint()}
    save_adapter(old_names, tmp_path / "old", {**card, "adapter_settings": {"type": "lora"}})
    fresh = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    load_adapter(fresh, tmp_path / "old")
    scoring = [ScoringRequest(images[0], _prompts(model)[0], " Yes.")]
    assert fresh.log_likelihood(scoring) == model.log_likelihood(scoring)


def test_reshaping_lora_replaces_its_layers(model) -> None:
    assert {v.shape[0] for k, v in model.trainable_state_dict().items() if ".lora_A." in k} == {16}
    model.configure_adapter({"r": 4})
    state = model.trainable_state_dict()
    assert {v.shape[0] for k, v in state.items() if ".lora_A." in k} == {4}
    lora_modules = {n for n, _ in model.hf.named_modules() if n.endswith(".lora_A")}
    assert len(lora_modules) == 2 * len(LORA_TARGETS)  # the old layers are gone, not stacked
    assert all(n.startswith(LM) for n in lora_modules)


def test_an_adapter_for_another_base_is_refused(model, other_hf_dir, dataset, tmp_path) -> None:
    finetune(
        model, dataset, tmp_path / "run", FAST.model_copy(update={"epochs": 1}), progress=False
    )
    other = load_model(f"hf:{other_hf_dir}", "cpu", progress=False)
    with pytest.raises(ModelError, match="was trained on model"):
        load_adapter(other, tmp_path / "run" / ADAPTER_DIR)


def test_lora_settings_travel_on_the_card(model, hf_dir, dataset, tmp_path) -> None:
    config = FAST.model_copy(update={"epochs": 1, "lora_r": 4, "lora_alpha": 8})
    card = finetune(model, dataset, tmp_path / "run", config, progress=False)
    assert card.adapter_settings["r"] == 4 and card.adapter_settings["alpha"] == 8
    assert {v.shape[0] for k, v in model.trainable_state_dict().items() if ".lora_A." in k} == {4}
    fresh = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    assert fresh.adapter_settings()["r"] == 16
    load_adapter(fresh, tmp_path / "run" / ADAPTER_DIR)  # re-shapes LoRA from the card
    assert fresh.adapter_settings()["r"] == 4
    assert torch.equal(
        next(iter(fresh.trainable_state_dict().values())),
        next(iter(model.trainable_state_dict().values())),
    )


# --- the study, end to end ------------------------------------------------------------------
def test_a_study_with_lora_and_shots_as_turns(hf_dir, tmp_path) -> None:
    from vlmalign.config import Condition, StudyConfig
    from vlmalign.study import run_study

    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(tmp_path / "a.png")
    shots = [{"question": "What is it?", "answer": "A cat."}]
    rows = [
        {
            "id": f"t{i}",
            "image": "a.png",
            "question": f"Should I help {i}?",
            "ideal_answer": "Yes.",
            "aligned_stance": "yes",
            "shots": shots,
            "split": "train" if i < 2 else "test",
        }
        for i in range(3)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = StudyConfig(
        dataset=str(tmp_path / "d.jsonl"),
        model=f"hf:{hf_dir}",
        out=tmp_path / "run",
        judges=("stance",),
        device="cpu",
        samples=1,
        shots_as="turns",
        sampling={"max_new_tokens": 3},
        conditions=(Condition(split="train", shots=0), Condition(split="train", shots=1)),
        finetuned_conditions=(Condition(split="test", shots=0),),
        finetune=FAST.model_copy(update={"epochs": 1}),
    )
    result = run_study(config, progress=False)
    assert result.generated == 2 + 2 + 1
    assert result.provenance.shots_as == "turns" and result.provenance.engine == "hf"
    assert result.provenance.finetuned_adapter and result.provenance.finetuned_adapter.adapter_hash
    assert run_study(config, progress=False).generated == 0  # resumed: nothing new


def test_magma_models_keep_shots_as_turns_by_default(tiny_vlm) -> None:
    prompt = Prompt((SHOT,), "Should I help her?")
    turns = tiny_vlm.render_prompt(prompt, "chat")
    assert turns == tiny_vlm.render_prompt(prompt, "chat", "turns")
    assert turns.count("<|user|>") == 2
    inline = tiny_vlm.render_prompt(prompt, "chat", "inline")
    assert inline == f"<|user|>{prompt.magma_text()}</s><|assistant|>"
