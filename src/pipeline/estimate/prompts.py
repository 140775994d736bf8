"""A prompt's estimated generation as NxDI runs it (model.generation.generate): one context-encoding call
at the prompt's bucket (model.generation.context_bucket) gives the first token (TTFT), then each further
token is one decode step reading the smallest KV bucket that holds the sequence so far. Throughput is NxDI
`generate_report`'s: sequence length x batch / end-to-end time (hardware-and-model.md §9.2)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from kernels.types import Phase
from model.generation import context_bucket, pick_bucket
from pipeline.estimate.step import ModelEstimator


def decode_buckets(prompt_tokens: int, new_tokens: int, buckets: Sequence[int]) -> Counter:
    """Decode steps per KV bucket: step i (1 <= i < new_tokens) feeds position prompt_tokens + i - 1 and reads
    the bucket holding prompt_tokens + i positions."""
    return Counter(pick_bucket(buckets, prompt_tokens + i) for i in range(1, new_tokens))


@dataclass(frozen=True)
class PromptEstimate:
    index: int
    prompt_tokens: int
    new_tokens: int
    context_bucket: int
    steps: dict[int, int]  # KV bucket -> decode steps at it
    ttft_ns: float
    decode_ns: float
    decode_floor_ns: float  # the same steps at the weight-bytes floor
    sequence_tokens: int  # seq_len x batch, NxDI's throughput numerator

    @property
    def decode_steps(self) -> int:
        return sum(self.steps.values())

    @property
    def e2e_ns(self) -> float:
        return self.ttft_ns + self.decode_ns

    @property
    def tpot_ns(self) -> float:
        """Mean time per decode step (0 when the prompt generates one token)."""
        return self.decode_ns / self.decode_steps if self.decode_steps else 0.0

    @property
    def floor_tpot_ns(self) -> float:
        return self.decode_floor_ns / self.decode_steps if self.decode_steps else 0.0

    @property
    def throughput_tok_s(self) -> float:
        return self.sequence_tokens / (self.e2e_ns / 1e9)

    def metrics(self) -> dict[str, float]:
        return {"ttft_ms": self.ttft_ns / 1e6, "tpot_ms": self.tpot_ns / 1e6, "e2e_ms": self.e2e_ns / 1e6,
                "throughput_tok_s": self.throughput_tok_s, "floor_tpot_ms": self.floor_tpot_ns / 1e6}


def estimate_prompt(estimator: ModelEstimator, index: int, prompt_tokens: int, new_tokens: int,
                    buckets: Sequence[int], sequence_tokens: int) -> PromptEstimate:
    bucket = context_bucket(buckets, prompt_tokens)
    steps = decode_buckets(prompt_tokens, new_tokens, buckets)
    decode = [(estimator.step(Phase.TOKEN, kv), n) for kv, n in sorted(steps.items())]
    return PromptEstimate(
        index, prompt_tokens, new_tokens, bucket, dict(sorted(steps.items())),
        estimator.step(Phase.CONTEXT, bucket).total_ns,
        sum(step.total_ns * n for step, n in decode), sum(step.weight_floor_ns * n for step, n in decode),
        sequence_tokens,
    )
