"""Benchmark of one real-shape decode step through the interpreter against the same step on torch references.

    PYTHONPATH=src python benchmarks/bench_decode_step.py

The real-dimension slice model (Qwen3-30B-A3B dims, 2 decoder layers, seeded weights) at TP=4, batch 1, bf16,
with every decode NKI variant (norm nki_add_rmsnorm, router nki_topk, experts grouped_v2, attention
nki_decode) and the context in the first KV bucket. The same weights and KV cache run one decode step with
`platform.executor=interp` (the kernels on the nki_cpu interpreter, every check and trace on) and with
`platform.executor=reference` (the variants' torch references), interleaved (the interpreter replays its kernels
after the warm-up step, which records them; nki_cpu.replay); medians of the steps and their
ratio, measured in this run, by wall clock and by this process's CPU time (on a shared machine the CPU time is
the steadier figure; BENCH_TORCH_THREADS=1 keeps torch from waiting on busy cores). Issue 14's goal:
interpreted at most 5x the references.
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

from kernels.slots import KernelSet  # noqa: E402
from kernels.types import Phase  # noqa: E402
from model.qwen3_moe import Qwen3Moe  # noqa: E402
from tests.models import checkpoint  # noqa: E402

DECODE_VARIANTS = {"norm": "nki_add_rmsnorm", "router": "nki_topk", "experts": "grouped_v2", "attention": "nki_decode"}
EXECUTORS = ("interp", "reference")
TP_DEGREE = 4
PROMPT_TOKENS = 40
BUCKET = 128
STEPS = int(os.environ.get("BENCH_STEPS", "5"))
GOAL = 5.0


class DecodeStep:
    """The slice at TP 4 with a prefilled KV cache; `run(executor)` is one decode step through that executor."""

    def __init__(self) -> None:
        model = Qwen3Moe.from_checkpoint(checkpoint("qwen3_30b_a3b_slice"),
                                         KernelSet.from_choices(DECODE_VARIANTS), TP_DEGREE, torch.bfloat16)
        self.models = {e: model.with_kernels(KernelSet.from_choices(DECODE_VARIANTS, executor=e)) for e in EXECUTORS}
        self.cache = model.new_cache(1, BUCKET)
        ids = torch.zeros(1, BUCKET, dtype=torch.long)
        ids[0, :PROMPT_TOKENS] = torch.arange(1000, 1000 + PROMPT_TOKENS)
        positions = torch.arange(BUCKET).unsqueeze(0)
        self.models["reference"].forward(ids, positions, self.cache, Phase.CONTEXT, BUCKET,
                                         last_index=torch.tensor([PROMPT_TOKENS - 1]))
        self.token = torch.tensor([[1000 + PROMPT_TOKENS]])
        self.position = torch.tensor([[PROMPT_TOKENS]])

    def run(self, executor: str) -> torch.Tensor:
        """One decode step (it rewrites the same KV cache position, so every step does the same work)."""
        return self.models[executor].forward(self.token, self.position, self.cache, Phase.TOKEN, BUCKET)


def main() -> None:
    if os.environ.get("BENCH_TORCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
    step = DecodeStep()
    first: dict[str, float] = {}
    for executor in EXECUTORS:  # warm-up; the interpreter's first step records every kernel, later ones replay
        start = time.perf_counter()
        step.run(executor)
        first[executor] = time.perf_counter() - start
    wall: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    cpu: dict[str, list[float]] = {e: [] for e in EXECUTORS}
    for _ in range(STEPS):
        for executor in EXECUTORS:
            start, start_cpu = time.perf_counter(), time.process_time()
            step.run(executor)
            wall[executor].append(time.perf_counter() - start)
            cpu[executor].append(time.process_time() - start_cpu)
    interp, reference = (statistics.median(wall[e]) for e in EXECUTORS)
    interp_cpu, reference_cpu = (statistics.median(cpu[e]) for e in EXECUTORS)
    ratio = interp / reference
    print(f"== one decode step, slice at TP={TP_DEGREE}, batch 1, every decode NKI variant "
          f"({', '.join(f'{k}={v}' for k, v in DECODE_VARIANTS.items())}; median of {STEPS}) ==")
    print(f"  interpreted {interp * 1e3:8.1f} ms   torch references {reference * 1e3:7.1f} ms   ratio {ratio:5.1f}x  "
          f"[goal <= {GOAL:.0f}x: {'met' if ratio <= GOAL else 'NOT met'}]")
    print(f"  CPU time: interpreted {interp_cpu * 1e3:8.1f} ms   torch references {reference_cpu * 1e3:7.1f} ms   "
          f"ratio {interp_cpu / reference_cpu:5.1f}x   (torch threads {torch.get_num_threads()})")
    print(f"  (interpreted steps after the first replay the kernels' recordings, nki_cpu.replay; the first step, which "
          f"interprets and records them, took {first['interp'] * 1e3:.0f} ms)")


if __name__ == "__main__":
    main()
