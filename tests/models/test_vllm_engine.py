"""`--engine vllm` without vLLM: parameter mapping, request building, serving a peft adapter
folder as it is, and the error paths, with a stand-in `vllm` module that records what it is
asked."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tiny_hf import save_tiny_llava

from vlmalign.config import StudyConfig
from vlmalign.errors import ConfigError, ModelError
from vlmalign.models.adapters import PEFT_WEIGHTS_FILE, load_adapter, save_adapter
from vlmalign.models.base import GenerationRequest, Generator, Scorer, ServesAdapters, Trainable
from vlmalign.models.registry import load_model
from vlmalign.models.vllm_engine import (
    INSTALL_HINT,
    VLLMVisionModel,
    lora_rank_limit,
    sampling_settings,
)
from vlmalign.prompts import IMAGE_TOKEN, Prompt
from vlmalign.sampling import SamplingParams


@pytest.fixture(scope="module")
def hf_dir(tiny_tokenizer, tmp_path_factory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("vllm") / "tiny-llava", tiny_tokenizer)


class FakeLLM:
    """Records its settings and requests; answers every prompt with its seed."""

    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.calls: list[dict[str, Any]] = []
        FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params, lora_request=None, use_tqdm=True):
        self.calls.append({"prompts": prompts, "params": sampling_params, "lora": lora_request})
        return [
            types.SimpleNamespace(
                outputs=[types.SimpleNamespace(text=f" seed {p.kwargs['seed']} ")]
            )
            for p in sampling_params
        ]


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeLoRARequest:
    def __init__(self, name: str, int_id: int, path: str) -> None:
        self.name, self.int_id, self.path = name, int_id, path


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    """A `vllm` stand-in on a machine that pretends to have a GPU."""
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest  # type: ignore[attr-defined]
    for name, mod in (("vllm", module), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    FakeLLM.instances.clear()
    return module


# --- pure parts ---------------------------------------------------------------------------------
def test_sampling_parameters_map_to_vllms() -> None:
    params = SamplingParams(max_new_tokens=9, temperature=0.7, top_p=0.9)
    assert sampling_settings(params, 42, [1, 5]) == {
        "seed": 42,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,  # our 0 (off) is vLLM's -1
        "max_tokens": 9,
        "stop_token_ids": [1, 5],
        "skip_special_tokens": True,
    }
    greedy = sampling_settings(SamplingParams(temperature=0.0, top_k=5), 1, [])
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == 5


def test_lora_rank_rounds_up_to_what_vllm_serves() -> None:
    assert [lora_rank_limit(r) for r in (1, 8, 9, 16, 300)] == [8, 8, 16, 16, 320]
    with pytest.raises(ModelError, match="above"):
        lora_rank_limit(1024)


# --- error paths -------------------------------------------------------------------------------
def test_vllm_runs_hf_models_only() -> None:
    with pytest.raises(ModelError, match="hf:<model> models only"):
        load_model("mini", "cpu", progress=False, engine="vllm")


def test_a_missing_vllm_says_how_to_install_it(hf_dir, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ModelError) as caught:
        load_model(f"hf:{hf_dir}", "cuda", progress=False, engine="vllm")
    assert (
        str(caught.value)
        == INSTALL_HINT
        == "--engine vllm needs vLLM: pip install 'vlmalign[vllm]'"
    )


def test_vllm_needs_a_gpu(hf_dir, fake_vllm, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        load_model(f"hf:{hf_dir}", "cuda", progress=False, engine="vllm")
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        load_model(f"hf:{hf_dir}", "cpu", progress=False, engine="vllm")


def test_a_vllm_study_cannot_finetune() -> None:
    from vlmalign.study_checks import validate_for_study

    with pytest.raises(ConfigError, match="only generates"):
        validate_for_study(StudyConfig(engine="vllm"))


# --- generation through the stand-in ------------------------------------------------------------
def test_requests_carry_the_models_text_the_image_and_a_seed_each(hf_dir, fake_vllm) -> None:
    model = load_model(f"hf:{hf_dir}", "cuda", progress=False, engine="vllm")
    assert isinstance(model, VLLMVisionModel)
    assert isinstance(model, Generator) and isinstance(model, ServesAdapters)
    assert not isinstance(model, Scorer) and not isinstance(model, Trainable)  # generation only
    hf = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    prompt = Prompt((), "Should I help her?")
    assert model.fingerprint() == hf.fingerprint()  # same base: same keys, same adapters
    for shots_as in ("inline", "turns"):
        text = model.render_prompt(prompt, "chat", shots_as)
        assert text == hf.render_prompt(prompt, "chat", shots_as)
    text = model.render_prompt(prompt, "chat")
    image = Image.new("RGBA", (10, 12))
    answers = model.generate(
        [GenerationRequest(image, text, 7), GenerationRequest(image, text, 8)],
        SamplingParams(max_new_tokens=4, temperature=0.5),
    )
    assert answers == ["seed 7", "seed 8"]
    (llm,) = FakeLLM.instances
    assert llm.settings["model"] == str(hf_dir) and llm.settings["revision"] is None
    assert llm.settings["enable_prefix_caching"] is True
    assert llm.settings["limit_mm_per_prompt"] == {"image": 1}
    assert "enable_lora" not in llm.settings
    (call,) = llm.calls
    first = call["prompts"][0]
    assert first["prompt"] == text.replace(IMAGE_TOKEN, "<image>")
    assert first["multi_modal_data"]["image"].mode == "RGB"
    assert [p.kwargs["max_tokens"] for p in call["params"]] == [4, 4]
    assert call["params"][0].kwargs["stop_token_ids"] == hf.eos_token_ids
    assert call["lora"] is None


def _hf_adapter(hf_dir: Path, folder: Path) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA adapter as the hf engine saves it; returns its weights."""
    hf = load_model(f"hf:{hf_dir}", "cpu", progress=False)
    assert isinstance(hf, Trainable)
    hf.configure_adapter({"r": 4, "alpha": 8})
    state = {k: torch.randn_like(v) for k, v in hf.trainable_state_dict().items()}
    card = {
        "base_model": hf.name,
        "base_model_fingerprint": hf.fingerprint(),
        "adapter_settings": hf.adapter_settings(),
    }
    save_adapter(state, folder, card, hf.adapter_layout())
    return state


def test_a_lora_adapter_folder_is_served_as_it_is(hf_dir, fake_vllm, tmp_path) -> None:
    folder = tmp_path / "adapter"
    state = _hf_adapter(hf_dir, folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}

    model = load_model(f"hf:{hf_dir}", "cuda", progress=False, engine="vllm")
    text = model.render_prompt(Prompt((), "Q"), "chat")
    request = [GenerationRequest(Image.new("RGB", (8, 8)), text, 1)]
    model.generate(request, SamplingParams())  # base model first: no LoRA
    loaded = load_adapter(model, folder)
    assert model.adapter_hash() == loaded.adapter_hash
    model.generate(request, SamplingParams())
    base_llm, lora_llm = FakeLLM.instances  # restarted with LoRA support
    assert "enable_lora" not in base_llm.settings
    assert lora_llm.settings["enable_lora"] is True and lora_llm.settings["max_lora_rank"] == 8
    lora = lora_llm.calls[0]["lora"]
    assert isinstance(lora, FakeLoRARequest) and lora.int_id == 1
    assert Path(lora.path) == folder.resolve()  # the folder itself, nothing rewritten
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    # What vLLM reads there: peft's config and weights under peft's names.
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and (config["r"], config["lora_alpha"]) == (4, 8)
    weights = load_file(str(folder / PEFT_WEIGHTS_FILE))
    assert set(weights) == set(state) and all(k.startswith("base_model.model.") for k in state)
    key = next(iter(state))
    assert torch.equal(weights[key], state[key])


def test_vllm_serves_only_adapters_in_peft_layout(hf_dir, fake_vllm, tmp_path) -> None:
    folder = tmp_path / "adapter"
    _hf_adapter(hf_dir, folder)
    (folder / "adapter_config.json").unlink()  # as an adapter saved before the peft layout
    model = load_model(f"hf:{hf_dir}", "cuda", progress=False, engine="vllm")
    with pytest.raises(ModelError, match="peft's layout"):
        load_adapter(model, folder)
    assert model.adapter_hash() is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["study", "--engine", "vllm"], "--engine vllm only generates"),
        (["study", "--engine", "tpu", "--no-finetune"], "field 'engine'"),
        (["study", "--shots-as", "sideways", "--no-finetune"], "field 'shots_as'"),
        (["ask", "x.png", "Q?", "--shots-as", "sideways"], "--shots-as must be one of"),
        (["ask", "x.png", "Q?", "--engine", "tpu"], "--engine must be one of"),
    ],
)
def test_bad_engine_and_shot_options_are_one_line_errors(args, fragment, tmp_path) -> None:
    import subprocess

    out = ["--out", str(tmp_path / "run")] if args[0] == "study" else []
    result = subprocess.run(
        [sys.executable, "-m", "vlmalign", *args, *out],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and fragment in last
    assert not (tmp_path / "run").exists()
