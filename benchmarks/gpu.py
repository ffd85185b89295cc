"""MAGMA-sized decoding and prefill on one GPU, each as a fraction of what the hardware allows.

    python benchmarks/gpu.py [--out gpu.json] [--adapters mlp|mlp+attention]
    python benchmarks/gpu.py --tiny            # small fp32 model on the CPU: a smoke test

Self-contained (torch, transformers and the standard library; nothing from vlmalign, nothing
downloaded), so it runs on any machine with a GPU and those two packages. It builds a model of
MAGMA's shape with random bf16 weights directly on the GPU: GPT-J 6B (`GPTJConfig`: d 4096, 28
blocks, 16 heads, rotary on 64 dimensions, 50,400 vocabulary rows) with a bottleneck adapter
(downsample 4) after every block's MLP (and attention, on request), and an image prefix of 144
embeddings projected from random 3072-d features (CLIP RN50x16's 12 x 12 grid), as MAGMA v1.

It measures the hardware first: memory bandwidth (a large device-to-device copy) and the bf16
matmul rate (a large GEMM). Then, each against the bound those two give:
- decode tokens/s at batch 1 and 32: a step must read every weight once and the KV cache, so
  the bound is (weight bytes + KV-cache bytes) / bandwidth per step;
- prefill tokens/s (32 prompts x 256 tokens): 2 x parameters x tokens FLOPs / matmul rate;
- the shared-prefill path of a study (5 samples per prompt): each prompt prefilled once, its
  KV cache expanded to 5 rows, 5 rows decoded, against prefilling all 5 rows (not shared).
A fraction near 1 means the code leaves little of the hardware unused. Takes about a minute
on an H200 (well under 5).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import GPTJConfig, GPTJForCausalLM


@dataclass(frozen=True)
class Shape:
    """Model and workload sizes."""

    n_embd: int
    n_layer: int
    n_head: int
    rotary_dim: int
    vocab: int
    feature_dim: int  # image features before the prefix projection
    prefix_tokens: int  # image prefix embeddings per prompt
    prompt_tokens: int  # image prefix + text
    prefill_prompts: int
    decode_batches: tuple[int, ...]
    new_tokens: int
    shared_prompts: int
    samples: int
    copy_bytes: int  # bandwidth test size
    gemm: int  # matmul test: (gemm x gemm) @ (gemm x gemm)
    downsample: int = 4


MAGMA = Shape(
    n_embd=4096,
    n_layer=28,
    n_head=16,
    rotary_dim=64,
    vocab=50400,
    feature_dim=3072,
    prefix_tokens=144,
    prompt_tokens=256,
    prefill_prompts=32,
    decode_batches=(1, 32),
    new_tokens=64,
    shared_prompts=32,
    samples=5,
    copy_bytes=4 * 2**30,
    gemm=8192,
)
TINY = Shape(
    n_embd=128,
    n_layer=2,
    n_head=4,
    rotary_dim=16,
    vocab=512,
    feature_dim=64,
    prefix_tokens=8,
    prompt_tokens=24,
    prefill_prompts=4,
    decode_batches=(1, 4),
    new_tokens=8,
    shared_prompts=3,
    samples=5,
    copy_bytes=64 * 2**20,
    gemm=512,
)


# --- the model -------------------------------------------------------------------------------


class Adapter(nn.Module):
    """MAGMA's bottleneck adapter: x + up(relu(down(x)))."""

    def __init__(self, dim: int, downsample: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, dim // downsample)
        self.up = nn.Linear(dim // downsample, dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(torch.relu(self.down(hidden)))


class AdaptedAttention(nn.Module):
    """An attention module followed by an adapter on its output (the rest passes through)."""

    def __init__(self, attention: nn.Module, adapter: Adapter) -> None:
        super().__init__()
        self.attention = attention
        self.adapter = adapter

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        output = self.attention(*args, **kwargs)
        if isinstance(output, tuple):
            return (self.adapter(output[0]), *output[1:])
        return self.adapter(output)


class ImagePrefix(nn.Module):
    """Image features -> LM-width prefix embeddings (MAGMA: Linear + LayerNorm)."""

    def __init__(self, feature_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim, dim)
        self.ln = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.ln(self.proj(features))


def build(
    shape: Shape, device: torch.device, dtype: torch.dtype, attention_adapters: bool
) -> tuple[Any, ImagePrefix]:
    """The LM with adapters and the image prefix, created on `device` in `dtype` (no CPU copy)."""
    config = GPTJConfig(
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        rotary_dim=shape.rotary_dim,
        vocab_size=shape.vocab,
        n_positions=2048,
        bos_token_id=shape.vocab - 1,  # GPT-J's 50256 is beyond a tiny vocabulary
        eos_token_id=shape.vocab - 1,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            lm = GPTJForCausalLM(config)
            for block in lm.transformer.h:
                mlp, attention = block.get_submodule("mlp"), block.get_submodule("attn")
                block.mlp = nn.Sequential(mlp, Adapter(shape.n_embd, shape.downsample))
                if attention_adapters:
                    adapter = Adapter(shape.n_embd, shape.downsample)
                    block.attn = AdaptedAttention(attention, adapter)
            prefix = ImagePrefix(shape.feature_dim, shape.n_embd)
    finally:
        torch.set_default_dtype(previous)
    return lm.eval(), prefix.eval()


# --- transformers across versions -----------------------------------------------------------


def _forward_parameters(lm: Any) -> set[str]:
    return set(inspect.signature(lm.forward).parameters)


def cache_keyword(lm: Any) -> str:
    """transformers renamed `past_key_values` to `cache`."""
    return "cache" if "cache" in _forward_parameters(lm) else "past_key_values"


def last_logits_only(lm: Any) -> dict[str, int]:
    """The keyword that limits the vocabulary projection to the last position, if any."""
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in _forward_parameters(lm):
            return {name: 1}
    return {}


def returned_cache(output: Any) -> Any:
    return output["cache"] if "cache" in output else output["past_key_values"]


def expand_cache(cache: Any, repeats: int) -> Any:
    """Each row of the KV cache repeated `repeats` times, in place where the cache allows."""
    if hasattr(cache, "batch_repeat_interleave"):
        cache.batch_repeat_interleave(repeats)
        return cache
    return tuple(tuple(t.repeat_interleave(repeats, dim=0) for t in layer) for layer in cache)


# --- timing -----------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of `work` after one warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        work()
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def memory_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes/s of a device-to-device copy (each byte read once and written once)."""
    source = torch.empty(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    return 2 * nbytes / timed(device, lambda: target.copy_(source), repeats=5)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """FLOP/s of a square GEMM."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    seconds = timed(device, lambda: a @ b, repeats=5)
    return 2 * size**3 / seconds


# --- workloads --------------------------------------------------------------------------------


class Runner:
    """Prompts of image prefix + text, prefilled and decoded the way a study does."""

    def __init__(self, lm: Any, prefix: ImagePrefix, shape: Shape, device: torch.device) -> None:
        self.lm, self.prefix, self.shape, self.device = lm, prefix, shape, device
        self.dtype = next(lm.parameters()).dtype
        self.cache_keyword = cache_keyword(lm)
        self.last_only = last_logits_only(lm)
        self.generator = torch.Generator(device=device).manual_seed(0)

    def prompts(self, count: int) -> torch.Tensor:
        """(count, prompt_tokens, d): image prefix from random features, then random text."""
        shape = self.shape
        features = torch.randn(
            count, shape.prefix_tokens, shape.feature_dim, device=self.device, dtype=self.dtype
        )
        text_ids = torch.randint(
            0, shape.vocab, (count, shape.prompt_tokens - shape.prefix_tokens), device=self.device
        )
        text = self.lm.get_input_embeddings()(text_ids)
        return torch.cat([self.prefix(features), text], dim=1)

    def prefill(self, embeds: torch.Tensor) -> tuple[torch.Tensor, Any]:
        output = self.lm(inputs_embeds=embeds, use_cache=True, **self.last_only)
        return output.logits[:, -1], returned_cache(output)

    def draw(self, logits: torch.Tensor) -> torch.Tensor:
        probabilities = (logits.float() / 0.7).softmax(-1)
        return torch.multinomial(probabilities, 1, generator=self.generator)

    def decode(self, logits: torch.Tensor, cache: Any, steps: int) -> None:
        for _ in range(steps):
            tokens = self.draw(logits)
            output = self.lm(input_ids=tokens, use_cache=True, **{self.cache_keyword: cache})
            logits, cache = output.logits[:, -1], returned_cache(output)

    def respond(self, embeds: torch.Tensor, samples: int, shared: bool) -> None:
        """`samples` responses per prompt: prefilled once and expanded, or prefilled per row."""
        if shared:
            logits, cache = self.prefill(embeds)
            cache = expand_cache(cache, samples)
            logits = logits.repeat_interleave(samples, dim=0)
        else:
            logits, cache = self.prefill(embeds.repeat_interleave(samples, dim=0))
        self.decode(logits, cache, self.shape.new_tokens)


@dataclass(frozen=True)
class Hardware:
    bandwidth: float  # bytes/s
    matmul: float  # FLOP/s


@dataclass(frozen=True)
class Sizes:
    """What bounds the model's speed: bytes read per decode step, FLOPs per prompt token."""

    weight_bytes: int  # every weight but the input embedding table (a step gathers few rows)
    kv_bytes_per_token: int  # keys + values of one position, all blocks
    flops_per_token: int  # 2 x parameters a token goes through (blocks, adapters, final norm)
    head_flops: int  # 2 x vocabulary projection parameters (one row of logits)

    @classmethod
    def of(cls, lm: Any, shape: Shape) -> Sizes:
        embedding = lm.get_input_embeddings().weight
        head = lm.get_output_embeddings().weight
        element = embedding.element_size()
        params = sum(p.numel() for p in lm.parameters())
        body = params - embedding.numel() - head.numel()
        return cls(
            weight_bytes=(params - embedding.numel()) * element,
            kv_bytes_per_token=2 * shape.n_layer * shape.n_embd * element,
            flops_per_token=2 * body,
            head_flops=2 * head.numel(),
        )

    def step_seconds(self, rows: int, context: float, hardware: Hardware) -> float:
        """Least time of one decode step of `rows` rows at a mean `context` length."""
        read = self.weight_bytes + rows * context * self.kv_bytes_per_token
        return read / hardware.bandwidth

    def prefill_seconds(self, prompts: int, tokens: int, logit_rows: int, hw: Hardware) -> float:
        flops = self.flops_per_token * prompts * tokens + self.head_flops * logit_rows
        return flops / hw.matmul


def decode_seconds(runner: Runner, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Median seconds of decoding new_tokens at `batch` rows, after an untimed prefill each
    time (decoding appends to the cache in place), and one warm-up run."""
    prompts = runner.prompts(batch)
    times = []
    for run in range(repeats + 1):
        logits, cache = runner.prefill(prompts)
        synchronize(device)
        started = time.perf_counter()
        runner.decode(logits, cache, runner.shape.new_tokens)
        synchronize(device)
        if run:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(
    runner: Runner, sizes: Sizes, hardware: Hardware, device: torch.device
) -> dict[str, Any]:
    shape = runner.shape
    steps = shape.new_tokens
    mean_context = shape.prompt_tokens + steps / 2
    results: dict[str, Any] = {}

    for batch in shape.decode_batches:
        seconds = decode_seconds(runner, batch, device)
        bound = steps * sizes.step_seconds(batch, mean_context, hardware)
        results[f"decode_batch_{batch}"] = _figures(batch * steps, seconds, bound)

    prompts = runner.prompts(shape.prefill_prompts)
    logit_rows = shape.prefill_prompts if runner.last_only else prompts.shape[0] * prompts.shape[1]
    seconds = timed(device, lambda: runner.prefill(prompts))
    bound = sizes.prefill_seconds(shape.prefill_prompts, shape.prompt_tokens, logit_rows, hardware)
    results["prefill"] = _figures(shape.prefill_prompts * shape.prompt_tokens, seconds, bound)

    prompts = runner.prompts(shape.shared_prompts)
    rows = shape.shared_prompts * shape.samples
    decode_bound = steps * sizes.step_seconds(rows, mean_context, hardware)
    for shared in (True, False):
        prefilled = shape.shared_prompts if shared else rows
        logit_rows = prefilled if runner.last_only else prefilled * shape.prompt_tokens
        bound = decode_bound + sizes.prefill_seconds(
            prefilled, shape.prompt_tokens, logit_rows, hardware
        )
        seconds = timed(device, functools.partial(runner.respond, prompts, shape.samples, shared))
        figures = _figures(rows * steps, seconds, bound)
        figures["responses_per_s"] = rows / seconds
        results["shared_prefill" if shared else "unshared_prefill"] = figures
    results["shared_prefill_speedup"] = (
        results["shared_prefill"]["tokens_per_s"] / results["unshared_prefill"]["tokens_per_s"]
    )
    return results


def _figures(tokens: int, seconds: float, bound_seconds: float) -> dict[str, Any]:
    return {
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "bound_tokens_per_s": tokens / bound_seconds,
        "fraction_of_bound": bound_seconds / seconds,
    }


def table(report: dict[str, Any]) -> str:
    hardware = report["hardware"]
    lines = [
        f"{report['machine']['device_name']}: copy {hardware['bandwidth_gb_s']:.0f} GB/s, "
        f"matmul {hardware['matmul_tflop_s']:.3g} TFLOP/s ({report['dtype']})",
        "",
        "| workload | tokens/s | bound tokens/s | fraction of bound |",
        "|---|---|---|---|",
    ]
    for name, figures in report["results"].items():
        if isinstance(figures, dict):
            lines.append(
                f"| {name} | {figures['tokens_per_s']:,.0f} | "
                f"{figures['bound_tokens_per_s']:,.0f} | {figures['fraction_of_bound']:.2f} |"
            )
    lines.append(f"\nshared prefill ÷ unshared: ×{report['results']['shared_prefill_speedup']:.2f}")
    return "\n".join(lines)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="small fp32 model (CPU smoke test)")
    parser.add_argument("--device", help="default: cuda (cpu with --tiny)")
    parser.add_argument("--adapters", choices=("mlp", "mlp+attention"), default="mlp")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    shape = TINY if args.tiny else MAGMA
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    dtype = torch.float32 if args.tiny else torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --tiny for a CPU smoke test")

    started = time.perf_counter()
    hardware = Hardware(
        memory_bandwidth(device, shape.copy_bytes), matmul_rate(device, dtype, shape.gemm)
    )
    lm, prefix = build(shape, device, dtype, args.adapters == "mlp+attention")
    built_s = time.perf_counter() - started
    sizes = Sizes.of(lm, shape)
    runner = Runner(lm, prefix, shape, device)
    results = measure(runner, sizes, hardware, device)
    report = {
        "machine": {
            "device_name": (
                torch.cuda.get_device_name(device)
                if device.type == "cuda"
                else platform.processor() or platform.machine()
            ),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "attention": getattr(lm.config, "_attn_implementation", None),
        },
        "shape": asdict(shape),
        "adapters": args.adapters,
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in lm.parameters())
        + sum(p.numel() for p in prefix.parameters()),
        "sizes": asdict(sizes),
        "hardware": {
            "bandwidth_gb_s": hardware.bandwidth / 1e9,
            "matmul_tflop_s": hardware.matmul / 1e12,
        },
        "results": results,
        "setup_s": built_s,
        "total_s": time.perf_counter() - started,
    }
    print(table(report))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
