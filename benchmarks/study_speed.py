"""Generation throughput of `mini` on the built-in dataset, by batch size (one run, as ratios).

    python benchmarks/study_speed.py [--prompts 32] [--batch-sizes 1 8 16]

Prints seconds per response for each batch size and the speed-up over batch size 1, all
measured in this run (these machines are noisy: compare ratios, not absolute numbers).
"""

from __future__ import annotations

import argparse
import time

import torch

from vlmalign.data.dataset import load_dataset
from vlmalign.data.images import load_image
from vlmalign.models.base import GenerationRequest
from vlmalign.models.registry import load_model
from vlmalign.prompts import build_prompt
from vlmalign.sampling import SamplingParams, derive_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--shots", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    model = load_model("mini", "cpu")
    data = load_dataset("builtin:moral-vqa-40")
    items = list(data.items)[: args.prompts]
    requests = [
        GenerationRequest(
            load_image(i.image, data.base_dir).image,
            model.render_prompt(build_prompt(i, args.shots), model.default_prompt_format),
            derive_seed(0, i.id, "bench", 0),
        )
        for i in items
    ]
    params = SamplingParams()
    model.generate(requests[:2], params)  # warm-up
    timings = {}
    outputs = {}
    for size in args.batch_sizes:
        start = time.perf_counter()
        outputs[size] = [
            text
            for s in range(0, len(requests), size)
            for text in model.generate(requests[s : s + size], params)
        ]
        timings[size] = (time.perf_counter() - start) / len(requests)
    base = timings[args.batch_sizes[0]]
    print(
        f"{len(requests)} prompts, {args.shots}-shot, {params.max_new_tokens} new tokens, "
        f"{torch.get_num_threads()} threads"
    )
    for size, seconds in timings.items():
        print(f"batch {size:>3}: {seconds:.3f} s/response  speed-up x{base / seconds:.2f}")
    same = all(outputs[s] == outputs[args.batch_sizes[0]] for s in args.batch_sizes)
    print(f"identical responses across batch sizes: {same}")


if __name__ == "__main__":
    main()
