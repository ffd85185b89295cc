"""`magma`: the paper's model, MAGMA v1 (Eichenberg et al., 2021), on stock transformers.

GPT-J 6B (`transformers.GPTJForCausalLM`) with a bottleneck adapter after every MLP, and an image
prefix from CLIP RN50x16 (`open_clip`'s ModifiedResNet at 384 px without its attention pool:
the 12 x 12 feature map becomes 144 prefix tokens of width 3072, projected to 4096). Weights
come from the released DeepSpeed checkpoint; `magma_checkpoint` maps its names to ours.

One builder serves every size: `build_magma(spec, ...)` with `magma_v1_spec()` is the paper's
model, and tests pass tiny specs of the same classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from vlmalign.cache import file_sha256
from vlmalign.errors import ModelError
from vlmalign.models.magma import ImagePrefix, MagmaModel, add_adapters
from vlmalign.models.magma_checkpoint import CHECKPOINT_FILE, read_checkpoint, to_our_names
from vlmalign.prompts import IMAGE_TOKEN

if TYPE_CHECKING:
    from transformers import GPTJConfig

log = logging.getLogger(__name__)

CHECKPOINT_ENV = "VLMALIGN_MAGMA_CHECKPOINT"
TOKENIZER_ENV = "VLMALIGN_MAGMA_TOKENIZER"
GPT2_TOKENIZER = "openai-community/gpt2"
GPT2_EOS = 50256
ROTARY_TABLE = "embed_positions"  # GPT-J's sin/cos table, a function of the config
ARCHITECTURE_VERSION = 1  # bump when the way `magma` is assembled changes its outputs
# A hub reference: "org/repo", optionally "/path/in/repo.pt" and "@revision".
_HUB_ID = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<file>[^@]+))?(?:@(?P<rev>[\w./-]+))?$")


@dataclass(frozen=True)
class ClipResNetSpec:
    """CLIP's modified ResNet; the defaults are RN50x16 (open_clip's model_configs/RN50x16)."""

    layers: tuple[int, int, int, int] = (6, 8, 18, 8)
    width: int = 96
    image_size: int = 384

    @property
    def feature_dim(self) -> int:
        return self.width * 32  # the last stage has 8 x width planes, bottleneck expansion 4

    @property
    def prefix_tokens(self) -> int:
        return (self.image_size // 32) ** 2  # the trunk downsamples by 32


@dataclass(frozen=True)
class MagmaSpec:
    """Everything that sets MAGMA's shapes."""

    lm: GPTJConfig
    encoder: ClipResNetSpec = field(default_factory=ClipResNetSpec)
    downsample_factor: int = 4  # adapter bottleneck: d -> d / 4 -> d
    prefix_dropout: float = 0.1


def gptj_6b_config(eos_token_id: int = GPT2_EOS) -> GPTJConfig:
    """GPT-J 6B: 28 blocks, d = 4096, 16 heads, rotary on 64 dims, 50,400 vocabulary rows."""
    from transformers import GPTJConfig

    return GPTJConfig(
        vocab_size=50400,
        n_positions=2048,
        n_embd=4096,
        n_layer=28,
        n_head=16,
        rotary_dim=64,
        activation_function="gelu_new",
        tie_word_embeddings=False,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
    )


def magma_v1_spec() -> MagmaSpec:
    """The released model (configs/MAGMA_v1.yml: clip_resnet_large, mlp adapters, factor 4)."""
    return MagmaSpec(lm=gptj_6b_config(), encoder=ClipResNetSpec())


class ClipGridEncoder(nn.Module):
    """CLIP's ResNet trunk without the attention pool: its last feature map as a token grid."""

    def __init__(self, spec: ClipResNetSpec) -> None:
        super().__init__()
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transform import image_transform

        self.spec = spec
        self.feature_dim = spec.feature_dim
        self.resnet = ModifiedResNet(
            layers=list(spec.layers),
            output_dim=spec.feature_dim,
            heads=1,  # the attention pool is dropped just below
            image_size=spec.image_size,
            width=spec.width,
        )
        self.resnet.attnpool = nn.Identity()  # MAGMA keeps the grid, not the pooled vector
        # Resize the short side (bicubic), center-crop, CLIP's mean/std: MAGMA's clip_preprocess.
        self._transform = image_transform(
            spec.image_size, is_train=False, mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD
        )

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([self._transform(image) for image in images])

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, h * w, feature_dim) features in row-major grid order, and an all-ones mask."""
        grid = self.resnet(pixels.to(self.resnet.conv1.weight.dtype))
        features = grid.flatten(2).transpose(1, 2)
        mask = torch.ones(features.shape[:2], dtype=torch.long, device=features.device)
        return features, mask


def prepare_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """MAGMA's tokenizer: GPT-2 plus `<|image|>` as the CLS token (id 50257), 2048 positions."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"cls_token": IMAGE_TOKEN})
    tokenizer.model_max_length = max_length
    return tokenizer


def build_magma(
    spec: MagmaSpec,
    tokenizer: Any,
    *,
    fingerprint: str,
    name: str = "magma",
    device: str | torch.device = "meta",
) -> MagmaModel:
    """Assemble MAGMA. On the meta device nothing is allocated: the checkpoint fills it."""
    from transformers import GPTJForCausalLM

    if len(tokenizer) > spec.lm.vocab_size:
        raise ModelError(f"tokenizer has {len(tokenizer)} tokens, the LM {spec.lm.vocab_size}")
    hidden = int(spec.lm.n_embd)
    with torch.device(device):
        lm = GPTJForCausalLM(spec.lm)
        encoder = ClipGridEncoder(spec.encoder)
        prefix = ImagePrefix(encoder, encoder.feature_dim, hidden, dropout=spec.prefix_dropout)
        adapters = add_adapters(lm, hidden, spec.downsample_factor)
    return MagmaModel(
        name,
        lm,
        tokenizer,
        prefix,
        adapters,
        fingerprint=fingerprint,
        default_prompt_format="magma",
    )


def load_official_weights(model: MagmaModel, checkpoint: Path) -> None:
    """Fill a (meta) model from an official checkpoint without copying the weights again."""
    expected = {
        key: value.shape
        for key, value in model.state_dict().items()
        if not key.endswith("." + ROTARY_TABLE)  # rebuilt from the config by `place`
    }
    # to_our_names checks that `state` has exactly the `expected` keys, so strict=False
    # only lets a rotary table that some transformers version saves go unloaded.
    state = to_our_names(read_checkpoint(checkpoint), expected)
    model.load_state_dict(state, strict=False, assign=True)


def place(model: MagmaModel, device: torch.device, lm_dtype: torch.dtype) -> None:
    """Move to `device`: the LM in `lm_dtype`, MAGMA's own parts in float32.

    The adapters and the image prefix are what finetuning trains (and the encoder, on request);
    float32 keeps their optimizer updates exact under fp16/bf16 autocast. Where they meet the
    half-precision LM, the prefix casts its output (`output_dtype`) and hooks convert around
    each adapter.
    """
    _rebuild_rotary_tables(model.lm, device)  # a meta buffer cannot be moved
    model.lm.to(device=device, dtype=lm_dtype)
    _rebuild_rotary_tables(model.lm, device)  # and `.to(dtype)` rounded it: float32, like HF
    model.image_prefix.to(device=device, dtype=torch.float32)
    for adapter in model.adapters:
        adapter.to(dtype=torch.float32)
    if lm_dtype != torch.float32:
        model.image_prefix.output_dtype = lm_dtype
        for adapter in model.adapters:
            adapter.register_forward_pre_hook(_inputs_to_float32)
            adapter.register_forward_hook(_output_to(lm_dtype))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelError(f"weights left unloaded: {', '.join(left[:8])}")


def load_magma(
    checkpoint: Path,
    tokenizer: Any,
    spec: MagmaSpec,
    *,
    device: str | torch.device = "cpu",
    lm_dtype: torch.dtype | None = None,
    name: str = "magma",
    tokenizer_source: str = GPT2_TOKENIZER,
) -> MagmaModel:
    """Build MAGMA from an official checkpoint file. `lm_dtype`: fp16 on CUDA, else fp32."""
    device = torch.device(device)
    if lm_dtype is None:
        lm_dtype = torch.float16 if device.type == "cuda" else torch.float32
    tokenizer = prepare_tokenizer(tokenizer, int(spec.lm.n_positions))
    identity = {
        "preset": "magma",
        "architecture_version": ARCHITECTURE_VERSION,
        "checkpoint_sha256": file_sha256(checkpoint),
        "tokenizer": tokenizer_source,
        "tokenizer_size": len(tokenizer),
        "lm": {k: spec.lm.to_dict()[k] for k in ("vocab_size", "n_embd", "n_layer", "n_head")},
        "encoder": asdict(spec.encoder),
        "downsample_factor": spec.downsample_factor,
    }
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    model = build_magma(spec, tokenizer, fingerprint=fingerprint, name=name, device="meta")
    load_official_weights(model, checkpoint)
    place(model, device, lm_dtype)
    model.set_trainable()
    return model.eval()


def resolve_checkpoint(argument: str | None) -> Path:
    """A local checkpoint file (or a directory holding one), else a hub id to download."""
    source = argument or os.environ.get(CHECKPOINT_ENV)
    if not source:
        raise ModelError(
            f"model 'magma' needs the MAGMA checkpoint: use 'magma:<path or hub id>' "
            f"or set {CHECKPOINT_ENV}"
        )
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if path.is_file():
        return path
    hub = _HUB_ID.match(source)
    if hub is None or source.startswith((".", "/", "~")):
        raise ModelError(
            f"MAGMA checkpoint {source!r} not found (give a file or a hub id org/repo)"
        )
    return _download(hub["repo"], hub["file"] or CHECKPOINT_FILE, hub["rev"])


def load_gpt2_tokenizer() -> tuple[Any, str]:
    """The GPT-2 tokenizer from $VLMALIGN_MAGMA_TOKENIZER (a path or hub id), else the hub."""
    from transformers import AutoTokenizer

    source = os.environ.get(TOKENIZER_ENV) or GPT2_TOKENIZER
    try:
        return AutoTokenizer.from_pretrained(source), source
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load the GPT-2 tokenizer from {source!r} ({exc}); "
            f"set {TOKENIZER_ENV} to a local copy"
        ) from exc


def build_magma_preset(
    device: torch.device, progress: bool = True, argument: str | None = None
) -> MagmaModel:
    """The registry's `magma` / `magma:<checkpoint path or hub id>`."""
    with tqdm(total=3, desc="prepare magma", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("checkpoint")
        checkpoint = resolve_checkpoint(argument)
        bar.update()
        bar.set_postfix_str("tokenizer")
        tokenizer, source = load_gpt2_tokenizer()
        bar.update()
        bar.set_postfix_str("weights (13 GB; first load hashes the file)")
        model = load_magma(
            checkpoint, tokenizer, magma_v1_spec(), device=device, tokenizer_source=source
        )
        bar.update()
    return model


def _download(repo: str, filename: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    log.info("downloading %s from the hub repository %s (about 13 GB)", filename, repo)
    try:
        return Path(str(hf_hub_download(repo, filename, revision=revision)))
    except (OSError, ValueError, EntryNotFoundError) as exc:
        raise ModelError(
            f"MAGMA checkpoint: no local file, and cannot download {filename} "
            f"from hub repository {repo!r}: {exc}"
        ) from exc


def _rebuild_rotary_tables(lm: nn.Module, device: torch.device) -> None:
    """GPT-J's sin/cos tables are never saved: rebuild them in float32, like HF.

    Depending on the transformers version they are a non-persistent buffer of a rotary module
    or a plain attribute of each attention; either way named `embed_positions`.
    """
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions

    for module in lm.modules():
        table = getattr(module, ROTARY_TABLE, None)
        if not isinstance(table, torch.Tensor):
            continue
        fresh = create_sinusoidal_positions(*table.shape).to(device)
        if ROTARY_TABLE in module._buffers:
            persistent = ROTARY_TABLE not in module._non_persistent_buffers_set
            module.register_buffer(ROTARY_TABLE, fresh, persistent=persistent)
        else:
            setattr(module, ROTARY_TABLE, fresh)


def _inputs_to_float32(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)


def _output_to(dtype: torch.dtype) -> Any:
    def hook(_module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        return output.to(dtype)

    return hook
