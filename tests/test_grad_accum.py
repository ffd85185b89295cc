"""Gradient accumulation: a batch taken in micro-batches trains as the whole batch at once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from tests.conftest import write_train_dataset
from vlmalign.config import FinetuneConfig
from vlmalign.data.dataset import Dataset, load_dataset
from vlmalign.finetune import finetune


def dataset_with_answers(folder: Path, items: int, answers: Sequence[str]) -> Dataset:
    """`write_train_dataset`'s items, item i answering answers[i % len(answers)]."""
    path = write_train_dataset(folder, items)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for index, row in enumerate(rows):
        row["ideal_answer"] = answers[index % len(answers)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return load_dataset(path)


def train_whole_and_accumulated(factory, data: Dataset, folder: Path) -> list[tuple]:
    """(trainable weights, first epoch's loss) with batch 4 at once, then as 2 micro-batches.

    Two epochs, so that a step runs at full learning rate after warm-up."""
    results = []
    for grad_accum in (1, 2):
        model = factory()
        model.image_prefix.dropout.p = 0.0  # dropout masks would differ between the two splits
        config = FinetuneConfig(epochs=2, batch_size=4, grad_accum=grad_accum, lr=5e-3)
        card = finetune(model, data, folder / f"accum-{grad_accum}", config, progress=False)
        results.append((model.trainable_state_dict(), card.epoch_losses[0].loss))
    return results


def assert_same_training(results: list[tuple], initial: dict[str, torch.Tensor]) -> None:
    (whole, whole_loss), (accumulated, accumulated_loss) = results
    assert accumulated_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == accumulated.keys() == initial.keys()
    for name, weight in whole.items():
        assert torch.allclose(accumulated[name], weight, atol=1e-6), name
    assert any(not torch.equal(whole[name], initial[name]) for name in whole)  # it did train


@pytest.mark.parametrize(
    "items",
    [
        4,  # a step per epoch: 4 examples at once, or 2 micro-batches of 2
        7,  # two steps per epoch; the second has 3 examples, as 2 + 1: each counts by its size
    ],
)
def test_grad_accum_trains_as_one_batch(tiny_vlm_factory, tmp_path, items: int) -> None:
    # One answer text for all: every example scores the same number of tokens.
    data = dataset_with_answers(tmp_path, items, ["Yes, help."])
    results = train_whole_and_accumulated(tiny_vlm_factory, data, tmp_path)
    assert_same_training(results, tiny_vlm_factory().trainable_state_dict())


def test_grad_accum_trains_as_one_batch_with_answers_of_different_lengths(
    tiny_vlm_factory, tmp_path
) -> None:
    answers = ["Yes.", "No, never.", "Yes, you should help.", "No, you should never do that."]
    data = dataset_with_answers(tmp_path, 4, answers)  # any split scores unequal token counts
    results = train_whole_and_accumulated(tiny_vlm_factory, data, tmp_path)
    assert_same_training(results, tiny_vlm_factory().trainable_state_dict())
