"""Finetuning on a tiny random MAGMA: loss masking, frozen weights, checkpoints, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import write_train_dataset
from vlmalign.config import FinetuneConfig
from vlmalign.data.dataset import load_dataset
from vlmalign.errors import ModelError
from vlmalign.finetune import ADAPTER_DIR, finetune
from vlmalign.models.adapters import CARD_FILE, WEIGHTS_FILE, load_adapter
from vlmalign.models.base import GenerationRequest, ScoringRequest
from vlmalign.models.magma import IGNORE
from vlmalign.prompts import IMAGE_TOKEN, Prompt
from vlmalign.sampling import SamplingParams

FAST = FinetuneConfig(epochs=2, batch_size=2, lr=5e-3)


@pytest.fixture
def dataset(tmp_path: Path):
    return load_dataset(write_train_dataset(tmp_path, 5))


def loss_by_hand(model, image, prompt: str, answer: str, answer_only: bool) -> torch.Tensor:
    """The next-token loss computed apart from the model's own batching: image prefix + prompt
    tokens + answer tokens + end of sequence, fed to the Hugging Face LM, whose `labels=` loss
    (shifted, mean over labelled positions) scores the answer, or all the text."""
    assert prompt.startswith(IMAGE_TOKEN)  # the magma format opens with the image
    tokenizer = model.tokenizer
    prompt_ids = tokenizer(prompt.removeprefix(IMAGE_TOKEN), add_special_tokens=False)["input_ids"]
    answer_ids = [*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    prefix, _ = model.image_prefix(model.image_prefix.enc.preprocess([image]))
    text = model.lm.get_input_embeddings()(torch.tensor([prompt_ids + answer_ids]))
    prompt_labels = [IGNORE] * len(prompt_ids) if answer_only else prompt_ids
    labels = [IGNORE] * prefix.shape[1] + prompt_labels + answer_ids
    return model.lm(inputs_embeds=torch.cat([prefix, text], 1), labels=torch.tensor([labels])).loss


def test_answer_loss_covers_only_answer_tokens(tiny_vlm, images) -> None:
    prompt = tiny_vlm.render_prompt(Prompt((), "Should I help her?"), "magma")
    answer = tiny_vlm.render_answer("Yes, help her.", "magma")
    with torch.no_grad():
        answer_loss = tiny_vlm.training_loss(images[:1], [prompt], [answer], "answer")
        caption_loss = tiny_vlm.training_loss(images[:1], [prompt], [answer], "caption")
        expected_answer = loss_by_hand(tiny_vlm, images[0], prompt, answer, answer_only=True)
        expected_caption = loss_by_hand(tiny_vlm, images[0], prompt, answer, answer_only=False)
    assert torch.allclose(answer_loss, expected_answer, atol=1e-5)
    assert torch.allclose(caption_loss, expected_caption, atol=1e-5)
    assert not torch.allclose(answer_loss, caption_loss, atol=1e-3)  # the modes score differently


def test_each_example_weighs_the_same_however_long_its_answer(tiny_vlm, images) -> None:
    prompt = tiny_vlm.render_prompt(Prompt((), "Should I help her?"), "magma")
    short = tiny_vlm.render_answer("Yes.", "magma")
    long = tiny_vlm.render_answer("No, you should never do that to anyone.", "magma")
    with torch.no_grad():
        batch_loss = tiny_vlm.training_loss(images[:2], [prompt] * 2, [short, long], "answer")
        alone = [
            loss_by_hand(tiny_vlm, images[0], prompt, short, answer_only=True),
            loss_by_hand(tiny_vlm, images[1], prompt, long, answer_only=True),
        ]
    assert torch.allclose(batch_loss, (alone[0] + alone[1]) / 2, atol=1e-5)


def test_a_single_step_finetune_learns(tiny_vlm, tmp_path) -> None:
    # Warm-up starts at a zero rate; the schedule is shifted so that the first step still learns.
    data = load_dataset(write_train_dataset(tmp_path, 2))
    before = {n: t.clone() for n, t in tiny_vlm.trainable_state_dict().items()}
    finetune(
        tiny_vlm, data, tmp_path / "run", FinetuneConfig(epochs=1, batch_size=2), progress=False
    )
    after = tiny_vlm.trainable_state_dict()
    assert any(not torch.equal(after[name], before[name]) for name in before)


def test_finetune_moves_only_trainable_weights_and_writes_an_adapter(
    tiny_vlm, dataset, tmp_path
) -> None:
    before = {n: p.detach().clone() for n, p in tiny_vlm.named_parameters()}
    card = finetune(tiny_vlm, dataset, tmp_path / "run", FAST, progress=False)
    trainable = {n for n, p in tiny_vlm.named_parameters() if p.requires_grad}
    assert trainable and all("adapter" in n or n.startswith("image_prefix.") for n in trainable)
    for name, param in tiny_vlm.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == (name in trainable), name
    adapter = tmp_path / "run" / ADAPTER_DIR
    assert (adapter / WEIGHTS_FILE).is_file() and (adapter / CARD_FILE).is_file()
    assert not (adapter / "checkpoints").exists()
    assert [e.epoch for e in card.epoch_losses] == [1, 2]
    assert card.epoch_losses[1].loss < card.epoch_losses[0].loss
    assert card.base_model_fingerprint == tiny_vlm.fingerprint()
    assert card.hyperparameters is not None and card.hyperparameters.betas == (0.9, 0.95)


def test_checkpoint_round_trip_gives_same_outputs(
    tiny_vlm, tiny_vlm_factory, dataset, tmp_path, images
) -> None:
    finetune(tiny_vlm, dataset, tmp_path / "run", FAST, progress=False)
    fresh = tiny_vlm_factory()
    card = load_adapter(fresh, tmp_path / "run" / ADAPTER_DIR)
    assert fresh.adapter_hash() == card.adapter_hash
    text = fresh.render_prompt(Prompt((), "Should I help her?"), "magma")
    requests = [GenerationRequest(im, text, 3) for im in images]
    params = SamplingParams(max_new_tokens=5, temperature=1.0)
    tiny_vlm.eval()
    assert fresh.generate(requests, params) == tiny_vlm.generate(requests, params)
    scoring = [ScoringRequest(images[0], text, " No, never.")]
    assert fresh.log_likelihood(scoring) == tiny_vlm.log_likelihood(scoring)
    assert tiny_vlm_factory().log_likelihood(scoring) != fresh.log_likelihood(scoring)


def test_adapter_for_another_base_is_refused(tiny_vlm, tiny_vlm_factory, dataset, tmp_path) -> None:
    finetune(tiny_vlm, dataset, tmp_path / "run", FAST, progress=False)
    other = tiny_vlm_factory(seed=1)
    other._fingerprint = "different"
    with pytest.raises(ModelError, match="was trained on model"):
        load_adapter(other, tmp_path / "run" / ADAPTER_DIR)


def test_interrupted_finetune_resumes_to_the_same_weights(
    tiny_vlm_factory, dataset, tmp_path
) -> None:
    config = FinetuneConfig(epochs=3, batch_size=2, lr=5e-3)
    straight = tiny_vlm_factory()
    finetune(straight, dataset, tmp_path / "straight", config, progress=False)

    class Stop(Exception):
        pass

    def stop_after_first(epoch: int, loss: float) -> None:
        if epoch == 1:
            raise Stop

    interrupted = tiny_vlm_factory()
    with pytest.raises(Stop):
        finetune(
            interrupted,
            dataset,
            tmp_path / "resumed",
            config,
            progress=False,
            on_epoch_end=stop_after_first,
        )
    assert (tmp_path / "resumed" / ADAPTER_DIR / "checkpoints" / "epoch-1").is_dir()
    resumed = tiny_vlm_factory()
    card = finetune(resumed, dataset, tmp_path / "resumed", config, progress=False)
    assert [e.epoch for e in card.epoch_losses] == [1, 2, 3]
    for (name, a), (_, b) in zip(
        straight.trainable_state_dict().items(), resumed.trainable_state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-6), name
    # A finished adapter is reused, not retrained.
    again = finetune(tiny_vlm_factory(), dataset, tmp_path / "resumed", config, progress=False)
    assert again.adapter_hash == card.adapter_hash


def test_encoder_trains_at_its_own_rate_when_asked(tiny_vlm, dataset, tmp_path) -> None:
    before = {n: p.detach().clone() for n, p in tiny_vlm.image_prefix.enc.named_parameters()}
    config = FinetuneConfig(epochs=1, batch_size=2, lr=5e-3, encoder_lr=1e-4)
    finetune(tiny_vlm, dataset, tmp_path / "run", config, progress=False)
    moved = [not torch.equal(p, before[n]) for n, p in tiny_vlm.image_prefix.enc.named_parameters()]
    assert all(moved)
    assert not any(p.requires_grad for p in tiny_vlm.image_prefix.enc.parameters())


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_schedule_warms_up_then_decays_to_zero(schedule: str) -> None:
    from vlmalign.finetune import _schedule

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    config = FinetuneConfig(schedule=schedule, warmup_ratio=0.125, decay_ratio=0.25)
    scheduler = _schedule(optimizer, config, total_steps=16)
    rates = []
    for _ in range(16):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # Two warm-up steps (0.125 of 16) counted from 1: half the rate, then all of it.
    assert rates[:2] == [pytest.approx(0.5), pytest.approx(1.0)]
    assert rates[-1] < 0.2 and optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-6)
    if schedule == "wsd":
        assert rates[1:12] == [pytest.approx(1.0)] * 11  # stable until the last quarter
