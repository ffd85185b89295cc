"""Hugging Face vision-language models (`hf:<hub id or folder>`), finetuned with LoRA.

Any model that `AutoModelForImageTextToText` loads (LLaVA, Qwen2/2.5-VL, SmolVLM/Idefics3,
PaliGemma, ...) is driven through its own processor: the chat template renders the prompt, the
processor expands the image placeholder and prepares the pixels. Finetuning trains LoRA weights
on the language model's attention and MLP projections through peft's own API (`get_peft_model`,
`get_peft_model_state_dict`/`set_peft_model_state_dict`); the vision tower, the projector and
every base weight stay frozen, and an adapter folder holds peft's files, which
`PeftModel.from_pretrained` and vLLM's LoRARequest read as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlmalign.errors import ModelError
from vlmalign.models.adapters import PEFT_WEIGHTS_FILE, AdapterLayout
from vlmalign.models.base import GenerationRequest, LossOn, ModelIdentity, ScoringRequest
from vlmalign.models.decoding import (
    Prefill,
    decode,
    distinct_prompts,
    prefill,
    takes_argument,
    until_eos,
)
from vlmalign.models.losses import mean_per_example
from vlmalign.models.tokens import IGNORE, eos_token_ids
from vlmalign.prompts import IMAGE_TOKEN, Prompt, PromptFormat, ShotsAs
from vlmalign.sampling import SamplingParams

log = logging.getLogger(__name__)

WRAPPER_VERSION = 1  # bump when the way prompts or inputs are built changes outputs
ADAPTER = "default"  # peft's adapter name
PEFT_PREFIX = "base_model.model."  # what peft's saved keys start with (the PeftModel's names)
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# token_type_ids of answer tokens: PaliGemma marks the generated suffix with 1 (causal
# attention); elsewhere 0 means text.
ANSWER_TOKEN_TYPE = {"paligemma": 1}
# Where a model counts positions from, if not 0 (as its own generate() counts them).
FIRST_POSITION = {"paligemma": 1}
_PROBE = "vlmalign probe"
# Inputs with one value per token, which grow when a continuation is appended.
PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


# --- LoRA settings ---------------------------------------------------------------------------
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


# --- where the weights come from ----------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A local folder (revision None) or a hub id at a commit."""

    location: str
    revision: str | None

    @property
    def local(self) -> bool:
        return self.revision is None


def parse_source(argument: str) -> tuple[str, str | None]:
    """'org/model@rev' -> ('org/model', 'rev'); an existing folder is taken as it is."""
    if Path(argument).expanduser().is_dir():
        return str(Path(argument).expanduser()), None
    location, _, revision = argument.partition("@")
    return location, revision or None


def hub_commit(repo_id: str, revision: str | None, cache_dir: str | None = None) -> str:
    """The commit of the hub repository's config.json in the local cache (or downloaded)."""
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        resolved = cached_file(repo_id, "config.json", revision=revision, cache_dir=cache_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"hf:{repo_id}: not a local folder and not in the Hugging Face cache "
            "(download it with HF_HUB_OFFLINE=0, or pass a folder)"
        ) from exc
    commit = extract_commit_hash(resolved, None)
    if commit is None:
        raise ModelError(f"hf:{repo_id}: cannot tell the revision of {resolved}")
    return commit


def resolve_source(argument: str) -> Source:
    location, revision = parse_source(argument)
    if Path(location).is_dir():
        return Source(location, None)
    if location.startswith(("/", ".", "~")) or location.count("/") != 1:
        raise ModelError(f"hf:{argument}: no such folder, and not a hub id (org/name)")
    return Source(location, hub_commit(location, revision))


def _identity_files(folder: Path) -> list[Path]:
    """Weights, configs, tokenizer and processor files: what decides the model's outputs."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in {".md", ".txt"}
    )


def fingerprint_of(source: Source) -> str:
    """Hub id + commit, or the hashes of a folder's files; part of every generation key."""
    from vlmalign.cache import file_sha256

    identity: dict[str, Any] = {"backend": "hf", "wrapper_version": WRAPPER_VERSION}
    if source.local:
        folder = Path(source.location)
        identity["files"] = {p.name: file_sha256(p) for p in _identity_files(folder)}
    else:
        identity["repo"] = source.location
        identity["commit"] = source.revision
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


# --- prompts -------------------------------------------------------------------------------
def chat_conversation(messages: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Our text messages (IMAGE_TOKEN inside) -> processor messages with typed content parts."""
    conversation = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        pieces = message["content"].split(IMAGE_TOKEN)
        for index, piece in enumerate(pieces):
            if index:
                parts.append({"type": "image"})
            if piece:
                parts.append({"type": "text", "text": piece})
        conversation.append({"role": message["role"], "content": parts})
    return conversation


class Prompter:
    """Renders prompts for one processor and turns stored prompts into the text it expects.

    Stored prompts mark the image with IMAGE_TOKEN; the model sees, in its place, what its chat
    template writes for an image (found by rendering a probe with and without one), or the
    processor's image token where there is no chat template (PaliGemma).
    """

    def __init__(self, processor: Any, name: str) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.has_chat_template = getattr(processor, "chat_template", None) is not None
        self.image_text = self._template_image_text() if self.has_chat_template else ""
        self.image_text = self.image_text or str(getattr(processor, "image_token", "") or "")
        if not self.image_text:
            raise ModelError(f"{name}: the processor has no image token and no chat template")
        self.default_prompt_format: PromptFormat = "chat" if self.has_chat_template else "magma"
        # Chat answers follow the generation prompt; most end with a newline, some with "X:".
        probe = self._chat([{"role": "user", "content": _PROBE}]) if self.has_chat_template else ""
        self.chat_answer_prefix = "" if not probe or probe[-1].isspace() else " "
        self._strip_bos = self._tokenizer_adds_bos()

    def _chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        text = self.processor.apply_chat_template(
            chat_conversation(messages), add_generation_prompt=True, tokenize=False
        )
        return str(text)

    def _template_image_text(self) -> str:
        with_image = self._chat([{"role": "user", "content": IMAGE_TOKEN + _PROBE}])
        without = self._chat([{"role": "user", "content": _PROBE}])
        start = 0
        while start < min(len(with_image), len(without)) and with_image[start] == without[start]:
            start += 1
        end = 0
        while end < len(without) - start and with_image[-1 - end] == without[-1 - end]:
            end += 1
        return with_image[start : len(with_image) - end]

    def _tokenizer_adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return False
        ids = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] == bos

    def render(self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None) -> str:
        if prompt_format == "magma":
            return prompt.magma_text()
        if not self.has_chat_template:
            raise ValueError(f"model {self.name!r} has no chat template; use prompt format 'magma'")
        text = self._chat(prompt.chat_messages(shots_as or "inline"))
        if text.count(self.image_text) != 1:
            raise ValueError(f"model {self.name!r}: the rendered prompt must show the image once")
        return text.replace(self.image_text, IMAGE_TOKEN)

    def answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return self.chat_answer_prefix + answer if prompt_format == "chat" else " " + answer

    def model_text(self, prompt_text: str) -> str:
        """The stored prompt as the processor takes it (its tokenizer adds BOS itself)."""
        if prompt_text.count(IMAGE_TOKEN) != 1:
            raise ValueError("a prompt must mark the image exactly once")
        text = prompt_text.replace(IMAGE_TOKEN, self.image_text)
        bos = self.tokenizer.bos_token
        if self._strip_bos and bos and text.startswith(bos):
            text = text[len(bos) :]
        return text


def _overrides_position_ids(model: Any) -> bool:
    """True for models with their own position scheme (Qwen2-VL's 3-D rotary positions)."""
    from transformers import GenerationMixin

    own = getattr(type(model), "_prepare_position_ids_for_generation", None)
    return own is not None and own is not GenerationMixin._prepare_position_ids_for_generation


# --- the model -----------------------------------------------------------------------------
class HFVisionModel(ModelIdentity, nn.Module):
    """A Hugging Face image-text-to-text model: a Generator, Scorer and Trainable (LoRA)."""

    encoder_trainable = False  # LoRA adapts the language model only

    def __init__(
        self,
        name: str,
        model: Any,
        processor: Any,
        *,
        fingerprint: str,
        lora: LoraSettings | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.hf = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation continues every row at the same end
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.prompter = Prompter(processor, name)
        self.default_prompt_format: PromptFormat = self.prompter.default_prompt_format
        self._fingerprint = fingerprint
        self._adapter_hash: str | None = None
        self._lora = lora or LoraSettings()
        # peft's wrapper, once LoRA is added. Not a registered submodule: it wraps `hf` itself,
        # whose modules peft adapts in place, so `hf` keeps serving inference and training.
        self._peft: list[Any] = []
        self.eos_token_ids = eos_token_ids(model.generation_config, self.tokenizer)
        self.image_token_id = self._image_token_id()
        takes_positions = takes_argument(self.hf, "position_ids")
        self._own_positions = _overrides_position_ids(model) and takes_positions
        self._plain_positions = not self._own_positions and takes_positions
        self._first_position = FIRST_POSITION.get(str(model.config.model_type), 0)
        # Requests asking the same prompt about the same image share one prefill.
        self.share_prefill = True
        self.encoder_calls = 0  # images passed to the vision tower (not cached here)
        self._answer_token_type = ANSWER_TOKEN_TYPE.get(str(model.config.model_type), 0)
        self.requires_grad_(False)
        self.eval()

    # --- identity -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    # --- prompts ------------------------------------------------------------------------
    def render_prompt(
        self, prompt: Prompt, prompt_format: PromptFormat, shots_as: ShotsAs | None = None
    ) -> str:
        return self.prompter.render(prompt, prompt_format, shots_as)

    def render_answer(self, answer: str, prompt_format: PromptFormat) -> str:
        return self.prompter.answer(answer, prompt_format)

    # --- inputs -------------------------------------------------------------------------
    def _image_token_id(self) -> int | None:
        token_id = getattr(self.processor, "image_token_id", None)
        if isinstance(token_id, int):
            return token_id
        token = getattr(self.processor, "image_token", None)
        return self.tokenizer.convert_tokens_to_ids(token) if token else None

    def _encode(self, images: Sequence[Any], texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Processor inputs of left-padded prompts, one image each."""
        batch = self.processor(
            text=[self.prompter.model_text(t) for t in texts],
            images=[[image.convert("RGB")] for image in images],
            padding=True,
            return_tensors="pt",
        )
        batch.pop("labels", None)  # PaliGemma's processor adds them; we build our own
        self.encoder_calls += len(images)
        dtype = self.hf.dtype  # pixels in the weights' precision (bf16 on GPU)
        return {
            k: v.to(self.device, dtype=dtype if v.is_floating_point() else v.dtype)
            if torch.is_tensor(v)
            else v
            for k, v in batch.items()
        }

    def _with_continuations(
        self, inputs: dict[str, torch.Tensor], continuations: Sequence[Sequence[int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Append token ids to each prompt and re-pad on the left; returns the new inputs and a
        mask of the appended positions. Per-token inputs (masks, token types) grow alongside."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        keys = [k for k in PER_TOKEN_INPUTS if k in inputs]
        real = [mask[i].bool() for i in range(len(ids))]
        length = max(int(r.sum()) + len(c) for r, c in zip(real, continuations, strict=True))
        appended_value = {"attention_mask": 1, "token_type_ids": self._answer_token_type}
        padding = {"input_ids": self.tokenizer.pad_token_id}
        out = {k: ids.new_full((len(ids), length), padding.get(k, 0)) for k in keys}
        appended = torch.zeros((len(ids), length), dtype=torch.bool, device=ids.device)
        for i, tail in enumerate(continuations):
            tail_ids = torch.tensor(list(tail), dtype=ids.dtype, device=ids.device)
            for key in keys:
                prompt = inputs[key][i][real[i]]
                extra = (
                    tail_ids
                    if key == "input_ids"
                    else torch.full_like(tail_ids, appended_value.get(key, 0))
                )
                row = torch.cat([prompt, extra.to(prompt.dtype)])
                out[key][i, length - len(row) :] = row
            if tail:
                appended[i, length - len(tail) :] = True
        return {**inputs, **out}, appended

    def _token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _image_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """The image's tokens in each row: from its first to its last placeholder token, and the
        special tokens around them (Qwen's vision start/end, Idefics3's image wrappers)."""
        found = torch.zeros_like(ids, dtype=torch.bool)
        if self.image_token_id is None:
            return found
        special = torch.tensor(sorted(self.tokenizer.all_special_ids), device=ids.device)
        for i, row in enumerate(ids):
            where = (row == self.image_token_id).nonzero()[:, 0]
            if not len(where):
                continue
            start, end = int(where[0]), int(where[-1])
            while start > 0 and bool(torch.isin(row[start - 1], special)):
                start -= 1
            while end + 1 < len(row) and bool(torch.isin(row[end + 1], special)):
                end += 1
            found[i, start : end + 1] = True
        return found

    def _plain_position_ids(self, mask: torch.Tensor) -> torch.Tensor:
        """Left padding: count positions from each row's first token."""
        return (mask.cumsum(-1) - 1).clamp(min=0) + self._first_position

    def _position_ids(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The positions of a prompt batch, as the model's own generate() sets them; None where
        the model's forward counts them itself (its rows must then not be padded)."""
        if self._plain_positions:
            return self._plain_position_ids(inputs["attention_mask"])
        if self._own_positions:  # e.g. Qwen2-VL's multimodal rotary positions
            positions = self.hf._prepare_position_ids_for_generation(
                inputs["input_ids"], dict(inputs)
            )
            return positions
        return None

    def _logits_at(self, inputs: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        """Logits at the `keep` positions only, flattened row by row. The vocabulary projection
        is the largest activation and scoring needs few positions (the answers, at the end of
        left-padded rows), so only the positions some row keeps are projected."""
        kwargs = dict(inputs)
        if self._plain_positions:
            kwargs["position_ids"] = self._plain_position_ids(inputs["attention_mask"])
        if not takes_argument(self.hf, "logits_to_keep"):
            return self.hf(**kwargs, use_cache=False).logits[keep]
        columns = keep.any(0).nonzero()[:, 0]  # a 1-D index: what transformers >= 4.56 takes
        logits = self.hf(**kwargs, use_cache=False, logits_to_keep=columns).logits
        return logits[keep[:, columns]]

    def _scored(
        self, inputs: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probabilities of the labelled tokens, their row index, the logits)."""
        targets = labels[:, 1:]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = targets != IGNORE
        logits = self._logits_at(inputs, keep).float()
        picked = targets[keep[:, :-1]]
        logprobs = logits.log_softmax(-1).gather(-1, picked[:, None])[:, 0]
        return logprobs, keep.nonzero()[:, 0], logits

    # --- inference ----------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[str]:
        """Each distinct (image, prompt) is prefilled once; every request decodes its own row.

        Only our SamplingParams decide: the model's generation config (its sampling settings,
        repetition penalty, ...) is not read.
        """
        if not requests:
            return []
        firsts, rows = distinct_prompts(
            [(r.image_key or id(r.image), r.prompt_text) for r in requests]
            if self.share_prefill
            else range(len(requests))
        )
        if self._own_positions or self._plain_positions:
            groups = [(firsts, rows, list(range(len(requests))))]
        else:  # unpadded: one prompt per prefill
            groups = [
                ([first], [0] * rows.count(p), [i for i, r in enumerate(rows) if r == p])
                for p, first in enumerate(firsts)
            ]
        answers: dict[int, str] = {}
        for prompt_requests, prompt_rows, members in groups:
            start = self._prefill([requests[i] for i in prompt_requests])
            tokens = decode(
                self.hf,
                start.rows(prompt_rows),
                params,
                [requests[i].seed for i in members],
                self.eos_token_ids,
            )
            answers.update(zip(members, map(self._decode, tokens), strict=True))
        return [answers[i] for i in range(len(requests))]

    def _prefill(self, prompts: Sequence[GenerationRequest]) -> Prefill:
        inputs = self._encode([r.image for r in prompts], [r.prompt_text for r in prompts])
        return prefill(self.hf, inputs, self._position_ids(inputs))

    def _decode(self, tokens: list[int]) -> str:
        answer = until_eos(tokens, self.eos_token_ids)
        return str(self.tokenizer.decode(answer, skip_special_tokens=True)).strip()

    @torch.inference_mode()
    def log_likelihood(self, requests: Sequence[ScoringRequest]) -> list[float]:
        if not requests:
            return []
        prompts = self._encode([r.image for r in requests], [r.prompt_text for r in requests])
        tails = [self._token_ids(r.continuation) for r in requests]
        inputs, appended = self._with_continuations(prompts, tails)
        labels = inputs["input_ids"].masked_fill(~appended, IGNORE)
        logprobs, rows, _ = self._scored(inputs, labels)
        sums = torch.zeros(len(requests), dtype=logprobs.dtype, device=logprobs.device)
        sums.index_add_(0, rows, logprobs)
        return [float(s) for s in sums]

    # --- training -----------------------------------------------------------------------
    def training_loss(
        self,
        images: Sequence[Any],
        prompt_texts: Sequence[str],
        answers: Sequence[str],
        loss_on: LossOn = "answer",
    ) -> torch.Tensor:
        """Next-token loss on the answers + end of sequence, or on all text (`caption`): each
        example's mean, averaged over examples (`losses.mean_per_example`)."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            eos = self.eos_token_ids[0]
        tails = [[*self._token_ids(answer), eos] for answer in answers]
        inputs, appended = self._with_continuations(self._encode(images, prompt_texts), tails)
        ids = inputs["input_ids"]
        if loss_on == "answer":
            scored = appended
        else:
            scored = inputs["attention_mask"].bool() & ~self._image_positions(ids)
        _, rows, logits = self._scored(inputs, ids.masked_fill(~scored, IGNORE))
        targets = ids[:, 1:][scored[:, 1:]]
        return mean_per_example(logits, targets, rows, len(answers))

    # Calling the module (as accelerate's DDP wrapper does) computes the training loss.
    forward = training_loss

    # --- LoRA ---------------------------------------------------------------------------
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


# --- loading -------------------------------------------------------------------------------
def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_processor(source: Source, argument: str) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(source.location, revision=source.revision)
    except (OSError, ValueError) as exc:
        raise ModelError(f"hf:{argument}: cannot load its processor: {_first_line(exc)}") from exc


def load_hf_model(argument: str, device: torch.device, progress: bool = True) -> HFVisionModel:
    """`hf:<argument>`: a hub id (optionally `@revision`) in the local cache, or a folder."""
    from transformers import AutoModelForImageTextToText

    source = resolve_source(argument)
    processor = load_processor(source, argument)
    log.info("loading %s", source.location)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            source.location, revision=source.revision, dtype=default_dtype(device)
        )
    except ValueError as exc:
        raise ModelError(
            f"hf:{argument}: not an image-text-to-text model ({_first_line(exc)})"
        ) from exc
    except OSError as exc:
        raise ModelError(f"hf:{argument}: cannot load its weights: {_first_line(exc)}") from exc
    model = model.to(device).eval()  # type: ignore[arg-type]
    return HFVisionModel(f"hf:{argument}", model, processor, fingerprint=fingerprint_of(source))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
