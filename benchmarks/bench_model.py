"""Benchmark of the CPU model against transformers' Qwen3MoeForCausalLM on the same weights.

    make bench          (or: PYTHONPATH=src python benchmarks/bench_model.py)

The real-dimension slice model (Qwen3-30B-A3B dims, 2 decoder layers, seeded weights), batch 1, bf16,
TP=1, every kernel `baseline`. Measured side by side in this run, ours and transformers' interleaved:
1. decode time per token (median over the steps of a 32-token greedy generation after a 128-token prompt);
2. 128-token prefill time (median of 3; transformers computes only the last position's logits, as ours);
3. this machine's memory read bandwidth: the faster of two reads of 1 GiB (best of 5 each): torch summing
   fp32 words, and our native bf16 matrix-vector product (kernels.cpu, which prefetches and can beat the
   plain sum); the decode floor: the weight bytes one decode step reads (attention, router, the 8 selected
   experts of every layer, lm_head, one embedding row) over that bandwidth; and torch's own bf16
   matrix-vector rate on the same weight, for comparison.
Goals (issue 2): decode at least as fast as transformers and within 1.3x of the floor; prefill 1.5x
faster than transformers.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.join(HERE, ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from kernels import cpu  # noqa: E402
from kernels.slots import KernelSet  # noqa: E402
from kernels.types import Phase  # noqa: E402
from model.generation import generate  # noqa: E402
from model.parallel import TensorParallel  # noqa: E402
from model.qwen3_moe import Qwen3Moe  # noqa: E402
from pipeline.estimate.ops import TORCH_OPS  # noqa: E402
from pipeline.estimate.step import CALL_OPS, LAYER_OPS  # noqa: E402
from tests.models import checkpoint, load_transformers  # noqa: E402

PROMPT = list(range(1000, 1128))
DECODE_TOKENS = 32
ROUNDS = 3


def _best_rate(work, nbytes: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def read_bandwidth_gbs(gib: float = 1.0) -> float:
    words = torch.ones(int(gib * 2**30) // 4, dtype=torch.float32)
    return _best_rate(words.sum, words.numel() * 4)


def bf16_gemv_gbs(product, gib: float = 1.0, hidden: int = 2048) -> float:
    weight = torch.ones(int(gib * 2**30) // 2 // hidden, hidden, dtype=torch.bfloat16)
    x = torch.ones(1, hidden, dtype=torch.bfloat16)
    return _best_rate(lambda: product(x, weight), weight.numel() * 2)


def decode_bytes(model: Qwen3Moe) -> int:
    """Weight bytes one decode step reads at batch 1: the time estimate's per-op weight bytes (attention, the
    fp32 router as NxDI keeps it, the selected experts, norms, lm_head, one embedding row), without the KV cache."""
    shapes = TensorParallel(model.dims, 1).layer_shapes(1, (128,), (0,), model.dtype)

    def read(ops) -> float:
        return sum(calls * TORCH_OPS[name](shapes, Phase.TOKEN).weight_bytes for name, calls in ops)

    return int(model.dims.num_hidden_layers * read(LAYER_OPS) + read(CALL_OPS))


def ours(model: Qwen3Moe) -> tuple[float, float]:
    generation = generate(model, [PROMPT], DECODE_TOKENS + 1, [128, 256])
    return generation.ttft_s, statistics.median(generation.step_s)


def theirs(hf) -> tuple[float, float]:
    with torch.inference_mode():
        ids = torch.tensor([PROMPT])
        start = time.perf_counter()
        out = hf(ids, use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - start
        cache, token, steps = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True), []
        for _ in range(DECODE_TOKENS):
            start = time.perf_counter()
            out = hf(token, cache=cache, use_cache=True)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            steps.append(time.perf_counter() - start)
    return prefill, statistics.median(steps)


def main() -> None:
    path = checkpoint("qwen3_30b_a3b_slice")
    model = Qwen3Moe.from_checkpoint(path, KernelSet.baseline(), 1, torch.bfloat16)
    hf = load_transformers(path, torch.bfloat16)
    ours(model), theirs(hf)  # warm-up
    mine, other = [], []
    for _ in range(ROUNDS):
        mine.append(ours(model))
        other.append(theirs(hf))
    summed, gemv, torch_gemv = read_bandwidth_gbs(), bf16_gemv_gbs(cpu.bf16_linear), bf16_gemv_gbs(F.linear)
    bandwidth = max(summed, gemv)
    step_bytes = decode_bytes(model)
    floor_ms = step_bytes / bandwidth / 1e6
    our_prefill, our_decode = (statistics.median(x) * 1000 for x in zip(*mine))
    hf_prefill, hf_decode = (statistics.median(x) * 1000 for x in zip(*other))
    print("== CPU model vs transformers (slice: Qwen3-30B-A3B dims, 2 layers, bf16, TP=1, batch 1) ==")
    print(f"  transformers experts implementation: {hf.config._experts_implementation}, "
          f"attention: {hf.config._attn_implementation}; torch threads: {torch.get_num_threads()}, "
          f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; native bf16 kernels: {cpu.available()}")
    print(f"  memory read bandwidth (measured): {bandwidth:.1f} GB/s (1 GiB read by torch's fp32 sum at "
          f"{summed:.1f} GB/s, by the native bf16 matrix-vector product at {gemv:.1f}, by torch's at "
          f"{torch_gemv:.1f})")
    print(f"  decode reads {step_bytes / 1e6:.0f} MB of weights per token -> floor {floor_ms:.1f} ms/token")
    print(f"  decode  ms/token: ours {our_decode:7.1f}  transformers {hf_decode:7.1f}  "
          f"ours/transformers {our_decode / hf_decode:.2f} (goal <= 1.00)  ours/floor {our_decode / floor_ms:.2f} "
          f"(goal <= 1.30)")
    print(f"  prefill 128 tokens ms: ours {our_prefill:7.1f}  transformers {hf_prefill:7.1f}  "
          f"speed-up {hf_prefill / our_prefill:.2f}x (goal >= 1.50)")


if __name__ == "__main__":
    main()
