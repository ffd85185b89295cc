"""Inference of an `hf:` model: generation through the shared decode path
(`models/decoding.py`, each distinct prompt prefilled once) and scoring of continuations."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlmalign.models.base import GenerationRequest, ScoringRequest
from vlmalign.models.decoding import Prefill, decode, distinct_prompts, prefill, until_eos
from vlmalign.models.hf.inputs import HFInputs
from vlmalign.models.tokens import IGNORE
from vlmalign.sampling import SamplingParams


class HFInference(HFInputs):
    """Mixin of `HFVisionModel`: a Generator and a Scorer."""

    eos_token_ids: list[int]
    share_prefill: bool

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
