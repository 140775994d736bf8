"""A prompt's e2e is TTFT plus its decode steps over the KV buckets NxDI walks, and throughput is NxDI's."""
from collections import Counter

import pytest
import torch

from kernels.slots import KernelSet
from kernels.types import Phase
from model.generation import generate
from pipeline.estimate import ModelEstimator, decode_buckets, estimate_prompt
from tests.estimate.shapes import BUCKETS, REAL, settings, shapes


class RecordingModel:
    """Stands in for Qwen3Moe in model.generation.generate and records the KV bucket of each decode call."""

    def __init__(self):
        self.kv_lengths = []

    def new_cache(self, batch, max_seq):
        return None

    def forward(self, ids, positions, cache, phase, kv_len, last_index=None, taps=None):
        if phase is Phase.TOKEN:
            self.kv_lengths.append(kv_len)
        return torch.zeros(ids.shape[0], 4)


@pytest.mark.parametrize("prompt_tokens", [14, 120, 128, 129, 512])
def test_decode_buckets_are_the_ones_generation_reads(prompt_tokens):
    new = 640 - prompt_tokens
    model = RecordingModel()
    generate(model, [[1] * prompt_tokens], new, BUCKETS)
    assert decode_buckets(prompt_tokens, new, BUCKETS) == Counter(model.kv_lengths)


def test_decode_buckets_by_hand():
    # positions 121..639 are held: 121..128 in bucket 128, 129..256 in 256, 257..639 in 640
    assert decode_buckets(120, 520, BUCKETS) == {128: 8, 256: 128, 640: 383}


def test_e2e_is_ttft_plus_each_decode_step_at_its_kv_bucket():
    est = ModelEstimator(shapes(REAL, 4), 4, KernelSet.baseline(), settings())
    prompt = estimate_prompt(est, 0, 120, 520, BUCKETS, 640)
    step = {kv: est.step(Phase.TOKEN, kv).total_ns for kv in BUCKETS}
    ttft = est.step(Phase.CONTEXT, 128).total_ns
    assert prompt.ttft_ns == ttft and prompt.context_bucket == 128
    assert prompt.e2e_ns == pytest.approx(ttft + 8 * step[128] + 128 * step[256] + 383 * step[640])
    assert prompt.tpot_ns == pytest.approx((prompt.e2e_ns - ttft) / 519)
    assert prompt.throughput_tok_s == pytest.approx(640 / (prompt.e2e_ns / 1e9))
    assert step[128] < step[256] < step[640]  # longer KV reads
    assert prompt.floor_tpot_ns <= prompt.tpot_ns


def test_a_prompt_of_exactly_one_bucket_is_estimated_in_the_next():
    est = ModelEstimator(shapes(REAL, 4), 4, KernelSet.baseline(), settings())
    assert estimate_prompt(est, 0, 128, 8, BUCKETS, 640).context_bucket == 256


def test_one_new_token_is_only_context_encoding():
    est = ModelEstimator(shapes(REAL, 4), 4, KernelSet.baseline(), settings())
    prompt = estimate_prompt(est, 0, 639, 1, BUCKETS, 640)
    assert prompt.decode_steps == 0 and prompt.tpot_ns == 0 and prompt.e2e_ns == prompt.ttft_ns
