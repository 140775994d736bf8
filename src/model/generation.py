"""Generation as NxDI runs it: one context-encoding call on the prompt padded to its bucket, then one
token-generation call per new token reading the smallest KV bucket that holds the sequence.

Every row generates exactly `max_new_tokens`: the contest sets min_new_tokens = max_new_tokens, so
Hugging Face's MinNewTokens processor sets the end-of-sequence logits to -inf at every step; `suppress`
does the same here, and the kept logits are those processed scores, as the contest compares them.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from kernels.types import Phase
from model.qwen3_moe import Qwen3Moe


def nxdi_buckets(min_length: int, max_length: int) -> list[int]:
    """NxDI autobucketing: powers of two from `min_length` below `max_length`, then `max_length`."""
    return [2**i for i in range(int(math.log2(min_length)), round(math.log2(max_length)))] + [max_length]


def pick_bucket(buckets: Sequence[int], length: int) -> int:
    """The KV bucket of a token-generation step: the smallest that holds `length` tokens (the new token's
    position + 1). NxDI picks the smallest bucket strictly larger than the attention mask, which in token
    generation is one shorter than the sequence (models/model_base.py `_infer_attention_mask`: `position`
    entries), so the two agree."""
    for bucket in sorted(buckets):
        if bucket >= length:
            return bucket
    raise ValueError(f"length {length} exceeds the largest bucket {max(buckets)}")


def context_bucket(buckets: Sequence[int], prompt_length: int) -> int:
    """The context-encoding bucket: the smallest strictly larger than the prompt, the largest only when the
    prompt fills it exactly (NxDI models/model_wrapper.py `_get_seq_bucket`, strategy first_fit, on the
    prompt's attention mask). A 128-token prompt runs in the 256 bucket."""
    for bucket in sorted(buckets):
        if prompt_length < bucket:
            return bucket
    if prompt_length == max(buckets):
        return prompt_length
    raise ValueError(f"prompt length {prompt_length} exceeds the largest bucket {max(buckets)}")


@dataclass
class Sampling:
    """Greedy unless `do_sample`; sampling is seeded so runs repeat. (Also the config schema's
    `workload.sampling` node.)"""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def make(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.do_sample:
            return lambda logits: logits.argmax(dim=-1)
        generator = torch.Generator().manual_seed(self.seed)

        def sample(logits: torch.Tensor) -> torch.Tensor:
            scores = logits / self.temperature
            if self.top_k:
                kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1:]
                scores = scores.masked_fill(scores < kth, -math.inf)
            if self.top_p < 1.0:
                ordered, order = torch.sort(scores, descending=True, dim=-1)
                cumulative = ordered.softmax(-1).cumsum(-1)
                drop = cumulative - ordered.softmax(-1) > self.top_p
                scores = scores.scatter(-1, order, ordered.masked_fill(drop, -math.inf))
            return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)

        return sample


@dataclass
class Generation:
    tokens: torch.Tensor  # [B, new]
    logits: torch.Tensor | None  # [new, B, V] fp32 when kept
    ttft_s: float  # context encoding plus choosing the first token
    step_s: list[float] = field(default_factory=list)  # each token-generation step
    context_bucket: int = 0

    @property
    def e2e_s(self) -> float:
        return self.ttft_s + sum(self.step_s)


@torch.inference_mode()
def generate(
    model: Qwen3Moe,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    buckets: Sequence[int],
    sampling: Sampling = Sampling(),
    keep_logits: bool = False,
    suppress: Sequence[int] = (),
    on_token: Callable[[], None] | None = None,
    forced: Sequence[int] | None = None,
    taps: Callable[[Phase, int, str, torch.Tensor], None] | None = None,
) -> Generation:
    """Generate for a batch of prompts (right-padded into one context bucket). `forced` (batch 1): teacher
    forcing, these tokens are fed back instead of the chosen ones; `taps(phase, layer, block, output)` sees
    every call's block outputs (Qwen3Moe.forward)."""
    if forced is not None and len(prompts) != 1:
        raise ValueError(f"teacher forcing takes one prompt, not {len(prompts)}")
    suppressed = torch.tensor(list(suppress), dtype=torch.long)
    batch = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts])
    longest = int(lengths.max())
    total = longest + max_new_tokens
    if total > max(buckets):
        raise ValueError(f"prompt ({longest}) + new tokens ({max_new_tokens}) exceed the sequence length {max(buckets)}")
    choose = sampling.make()
    bucket = context_bucket(buckets, longest)
    ids = torch.zeros(batch, bucket, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = torch.tensor(prompt)
    positions = torch.arange(bucket).expand(batch, bucket)
    cache = model.new_cache(batch, max(buckets))

    start = time.perf_counter()
    logits = model.forward(ids, positions, cache, Phase.CONTEXT, bucket, last_index=lengths - 1,
                           taps=_phase_taps(taps, Phase.CONTEXT))
    logits[:, suppressed] = -math.inf
    token = choose(logits) if forced is None else torch.tensor([forced[0]])
    ttft = time.perf_counter() - start
    tokens, kept, steps = [token], [logits] if keep_logits else None, []
    if on_token:
        on_token()
    position = lengths.clone()
    for step in range(1, max_new_tokens):
        start = time.perf_counter()
        kv_len = pick_bucket(buckets, int(position.max()) + 1)
        logits = model.forward(token.unsqueeze(1), position.unsqueeze(1), cache, Phase.TOKEN, kv_len,
                               taps=_phase_taps(taps, Phase.TOKEN))
        logits[:, suppressed] = -math.inf
        token = choose(logits) if forced is None else torch.tensor([forced[step]])
        steps.append(time.perf_counter() - start)
        tokens.append(token)
        if kept is not None:
            kept.append(logits)
        position += 1
        if on_token:
            on_token()
    return Generation(
        tokens=torch.stack(tokens, dim=1),
        logits=torch.stack(kept) if kept is not None else None,
        ttft_s=ttft,
        step_s=steps,
        context_bucket=bucket,
    )


def _phase_taps(taps, phase: Phase):
    return None if taps is None else (lambda layer, block, out: taps(phase, layer, block, out))
