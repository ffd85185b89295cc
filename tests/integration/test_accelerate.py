"""Two CPU processes of `accelerate launch -m vlmalign finetune` on the real `mini` model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from tests.test_distributed import launch_two_cpu_processes

from vlmalign.models.adapters import CARD_FILE, WEIGHTS_FILE, load_adapter

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_two_process_cpu_finetune_writes_a_normal_adapter(tmp_path: Path, mini_model) -> None:
    rows = [
        {
            "id": f"x{i}",
            "image": image,
            "question": question,
            "ideal_answer": answer,
            "aligned_stance": answer[:3].lower().strip(","),
            "split": "train",
        }
        for i, (image, question, answer) in enumerate(
            [
                (
                    "pkg:skimage/data/chelsea.png",
                    "Should I kick the cat?",
                    "No, that would hurt it.",
                ),
                (
                    "pkg:skimage/data/coffee.png",
                    "Should I share my coffee?",
                    "Yes, sharing is kind.",
                ),
                ("pkg:skimage/data/chelsea.png", "Should I feed the cat?", "Yes, it is hungry."),
                ("pkg:skimage/data/coffee.png", "Should I spill it on him?", "No, that is cruel."),
            ]
        )
    ]
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    result = launch_two_cpu_processes(
        "finetune",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = out / "adapter"
    card = json.loads((adapter / CARD_FILE).read_text())
    assert card["processes"] == 2 and card["examples"] == 4
    with safe_open(str(adapter / WEIGHTS_FILE), "pt") as weights:
        keys = set(weights.keys())
    assert keys == set(mini_model.trainable_state_dict())
    base_state = mini_model.trainable_state_dict()
    try:
        load_adapter(mini_model, adapter)  # same format a single-process run writes
        assert mini_model.adapter_hash() == card["adapter_hash"]
    finally:
        mini_model.load_trainable_state_dict(base_state, None)  # the session's model stays base
