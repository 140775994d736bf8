"""Benchmark of kernel.attention=nki_decode at real per-rank shapes (Qwen3-30B-A3B at TP=4: H=2048, 8 q
heads, 1 KV head, D=128, one token), for each contest KV bucket.

    PYTHONPATH=src python benchmarks/bench_kernels_attention.py

Prints, measured in this run: the interpreted kernel's time against the torch reference's (medians), the
error against the reference, and from the kernel's trace the instructions per engine, MACs (with the
baseline's count for the same call), DMA bytes and peak SBUF/PSUM per partition.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import torch  # noqa: E402

import kernels  # noqa: E402
import nki_cpu  # noqa: E402
from kernels.examples import example_call  # noqa: E402
from kernels.executors import make_executor  # noqa: E402
from kernels.macs import baseline_macs  # noqa: E402
from kernels.types import LayerShapes, Phase  # noqa: E402

REAL_TP4 = LayerShapes(batch=1, context_lengths=(128,), kv_lengths=(128,), hidden=2048, q_heads=8, kv_heads=1,
                       head_dim=128, experts=128, top_k=8, intermediate=192, vocab=37984, dtype=torch.bfloat16)
KV_BUCKETS = (128, 256, 640)
REPEATS = 3


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(shapes: LayerShapes) -> dict:
    """Median interpreted and reference times over fresh inputs (the kernel writes the cache), plus the
    trace and error of the last interpreted call."""
    variant = kernels.get("attention", "nki_decode")
    params = variant.make_params()
    run = make_executor("interp")

    def args():
        return example_call("attention", Phase.TOKEN, shapes, 0, transposed=True).args

    interp, torch_times = [], []
    for _ in range(REPEATS):
        kernel_args, reference_args = args(), args()
        with nki_cpu.recording() as traces:
            interp.append(_timed(lambda: run(variant, params, kernel_args)))
        torch_times.append(_timed(lambda: variant.reference(*reference_args)))
    actual, expected = run(variant, params, args()), variant.reference(*args())
    error = float((actual.float() - expected.float()).abs().max() / expected.float().abs().max())
    return {"interp_s": statistics.median(interp), "torch_s": statistics.median(torch_times), "trace": traces[0],
            "error": error, "baseline_macs": baseline_macs("attention", Phase.TOKEN, shapes)}


def main() -> None:
    print(f"nki_decode at TP=4 per-rank shapes (B=1, H=2048, 8 q heads, 1 KV head, D=128, bf16, trn2 limits), "
          f"medians of {REPEATS}; torch uses {torch.get_num_threads()} threads")
    for kv_len in KV_BUCKETS:
        result = measure(dataclasses.replace(REAL_TP4, kv_lengths=(kv_len,)))
        trace = result["trace"]
        engines = ", ".join(f"{engine} {count}" for engine, count in sorted(trace.count_by_engine().items()))
        print(f"kv_len {kv_len}: interpreted {result['interp_s'] * 1e3:.0f} ms, torch reference "
              f"{result['torch_s'] * 1e3:.1f} ms ({result['interp_s'] / result['torch_s']:.0f}x); "
              f"max |error| / max |reference| = {result['error']:.2e}")
        print(f"  {len(trace)} instructions ({engines}); {trace.total_macs:,} MACs (baseline "
              f"{result['baseline_macs']:,}); {trace.total_dma_bytes:,} DMA bytes; peak SBUF "
              f"{trace.peak_sbuf_bytes:,} B/partition, peak PSUM {trace.peak_psum_bytes:,} B/partition")


if __name__ == "__main__":
    main()
