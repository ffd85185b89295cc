"""LoRA for `hf:` models through peft's own API: the settings, wrapping the language model's
projections (`get_peft_model`), the trainable weights, their state dicts by peft's names, and
the adapter folder's layout (peft's files)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from vlmalign.errors import ModelError
from vlmalign.models.adapters import PEFT_WEIGHTS_FILE, AdapterLayout

ADAPTER = "default"  # peft's adapter name
PEFT_PREFIX = "base_model.model."  # what peft's saved keys start with (the PeftModel's names)
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the language model: rank, scale alpha / r, dropout, projection names."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def as_dict(self) -> dict[str, Any]:
        return {"type": "lora", **asdict(self), "targets": list(self.targets)}

    def updated(self, settings: Mapping[str, Any]) -> LoraSettings:
        """These settings with the known keys of `settings` applied (others are ignored)."""
        if settings.get("type", "lora") != "lora":
            raise ValueError(f"adapter type {settings['type']!r} is not LoRA")
        changes: dict[str, Any] = {}
        if "r" in settings:
            changes["r"] = int(settings["r"])
        if "alpha" in settings:
            changes["alpha"] = int(settings["alpha"])
        if "dropout" in settings:
            changes["dropout"] = float(settings["dropout"])
        if "targets" in settings:
            changes["targets"] = tuple(str(t) for t in settings["targets"])
        new = replace(self, **changes)
        if new.r < 1 or new.alpha <= 0 or not 0 <= new.dropout < 1 or not new.targets:
            raise ValueError(f"invalid LoRA settings {new.as_dict()}")
        return new


class LoraAdapters(nn.Module):
    """Mixin of `HFVisionModel`: a Trainable whose trainable weights are LoRA's (peft adds them
    on first use, so base inference runs without).

    `HFVisionModel.__init__` sets the attributes annotated here.
    """

    name: str
    hf: Any
    _lora: LoraSettings
    _peft: list[Any]
    _adapter_hash: str | None

    def _language_model_path(self) -> str:
        decoder = self.hf.get_decoder()
        for name, module in self.hf.named_modules():
            if module is decoder and name:
                return name
        raise ModelError(f"{self.name}: cannot find the language model inside the VLM")

    def _peft_model(self) -> Any:
        """The PeftModel around `hf`, adding LoRA on first use (base inference runs without)."""
        if self._peft:
            return self._peft[0]
        from peft import LoraConfig, get_peft_model

        path = self._language_model_path()
        targets = "|".join(re.escape(t) for t in self._lora.targets)
        config = LoraConfig(
            r=self._lora.r,
            lora_alpha=self._lora.alpha,
            lora_dropout=self._lora.dropout,
            # The language model's projections only, not the vision tower's namesakes.
            target_modules=rf"{re.escape(path)}\..*\.({targets})",
            bias="none",
        )
        # A fixed seed: LoRA's random down-projections are the same in every process and run.
        # peft keeps LoRA weights in float32 under a bf16/fp16 model (autocast_adapter_dtype):
        # small updates are not rounded away, and an adapter is the same file on any device.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            try:
                peft_model = get_peft_model(self.hf, config, adapter_name=ADAPTER)
            except ValueError as exc:
                raise ModelError(
                    f"{self.name}: no {'/'.join(self._lora.targets)} projections under {path}"
                ) from exc
        self._peft.append(peft_model)
        self.train(self.training)  # new LoRA dropout layers follow the model's mode
        self.set_trainable()
        return peft_model

    def _lora_parameters(self) -> list[nn.Parameter]:
        """The LoRA weights (peft names them `lora_A`/`lora_B`)."""
        peft_model = self._peft_model()
        return [p for n, p in peft_model.named_parameters() if ".lora_" in n]

    def adapter_settings(self) -> dict[str, Any]:
        return self._lora.as_dict()

    def configure_adapter(self, settings: Mapping[str, Any]) -> None:
        new = self._lora.updated(settings)
        if new == self._lora:
            return
        if self._peft:  # LoRA layers of the new shape are added on next use
            self.hf = self._peft.pop().unload()
        self._lora, self._adapter_hash = new, None

    def adapter_layout(self) -> AdapterLayout:
        """peft's files, as `PeftModel.save_pretrained` writes them."""
        peft_config = self._peft_model().peft_config[ADAPTER]
        return AdapterLayout(
            PEFT_WEIGHTS_FILE,
            {"format": "pt"},  # the safetensors header peft writes
            lambda directory: peft_config.save_pretrained(str(directory)),
        )

    def trainable_parameters(self, include_encoder: bool = False) -> Iterator[nn.Parameter]:
        if include_encoder:
            raise ModelError(f"{self.name}: the vision tower is not finetuned (LoRA only)")
        yield from self._lora_parameters()

    def trainable_groups(self, include_encoder: bool = False) -> dict[str, list[nn.Parameter]]:
        return {"adapters": list(self.trainable_parameters(include_encoder))}

    def set_trainable(self, include_encoder: bool = False) -> None:
        self.requires_grad_(False)
        for param in self.trainable_parameters(include_encoder):
            param.requires_grad_(True)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA weights by the names peft saves them under."""
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self._peft_model(), adapter_name=ADAPTER)
        return {n: t.detach().cpu().clone() for n, t in state.items()}

    def load_trainable_state_dict(
        self, state: dict[str, torch.Tensor], adapter_hash: str | None
    ) -> None:
        from peft import set_peft_model_state_dict

        expected = self.trainable_state_dict()
        # Adapters saved before they were in peft's layout name the weights without its prefix.
        state = {k if k.startswith(PEFT_PREFIX) else PEFT_PREFIX + k: v for k, v in state.items()}
        unknown, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
        if unknown:
            raise ValueError(f"adapter has weights this model lacks: {', '.join(unknown[:5])}")
        if missing:
            raise ValueError(f"adapter lacks LoRA weights: {', '.join(missing[:5])}")
        for name, value in state.items():
            if expected[name].shape != value.shape:
                raise ValueError(f"adapter weight {name} has shape {tuple(value.shape)}")
        set_peft_model_state_dict(self._peft_model(), state, adapter_name=ADAPTER)
        self._adapter_hash = adapter_hash
