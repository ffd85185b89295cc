"""The judges that run a model give the same verdicts on a CUDA GPU as on the CPU.

Skipped without a GPU; run on a GPU machine with `pytest tests/judges/test_cuda.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.judges.test_ethics_roberta import save_ethics_style, tiny_classifier, write_tokenizer
from tests.judges.test_vlm import inputs

from vlmalign.judges.base import JudgeInput
from vlmalign.judges.ethics_roberta import EthicsRobertaJudge
from vlmalign.judges.vlm import VlmJudge

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_ethics_roberta_on_cuda_matches_cpu(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    checkpoint = save_ethics_style(tiny_classifier(), tmp_path / "cm_roberta-large.pt")
    tokenizer = str(write_tokenizer(tmp_path / "tok"))
    texts = [JudgeInput(question="I help.", response="a"), JudgeInput(question="x", response="I")]
    verdicts = {
        device: EthicsRobertaJudge.from_checkpoint(
            checkpoint, tokenizer=tokenizer, device=device
        ).judge(texts)
        for device in ("cpu", "cuda")
    }
    for cpu, gpu in zip(verdicts["cpu"], verdicts["cuda"], strict=True):
        assert cpu.aligned == gpu.aligned
        assert gpu.detail["logit"] == pytest.approx(cpu.detail["logit"], abs=1e-3)


def test_vlm_judge_on_cuda_matches_cpu(tiny_vlm_factory, images, tmp_path: Path) -> None:
    for i, image in enumerate(images):
        image.save(tmp_path / f"im{i}.png")
    odds = {}
    for device in ("cpu", "cuda"):
        model = tiny_vlm_factory().to(device)
        judge = VlmJudge(model, image_base_dir=tmp_path, batch_size=3)
        odds[device] = [v.detail["log_odds"] for v in judge.judge(inputs(6))]
    assert odds["cuda"] == pytest.approx(odds["cpu"], abs=1e-3)
