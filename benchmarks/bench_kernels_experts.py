"""Benchmark of the NKI decode expert and router kernels at the real per-rank shapes (Qwen3-30B-A3B at TP=4:
hidden 2048, 128 experts, top-8, 192 intermediate columns per rank; batch 1, as in the contest).

    PYTHONPATH=src python benchmarks/bench_kernels_experts.py       # BENCH_REPEATS=N to change the runs

For experts.grouped_v2, experts.selective_v1 and router.nki_topk (decode, and the router's context bucket
too), prints, measured in this run: the interpreted time against the variant's torch reference (medians of
REPEATS runs on the same inputs, and their ratio), the trace's instructions per engine, its MACs, DMA bytes
and peak SBUF bytes per partition, and the error against the reference (max mode). Time estimates for
Trainium come from the cost model, not from here.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import kernels  # noqa: E402
import nki_cpu  # noqa: E402
from kernels.examples import example_call  # noqa: E402
from kernels.executors import make_executor  # noqa: E402
from kernels.types import LayerShapes, Phase  # noqa: E402
from model.dims import ModelDims  # noqa: E402
from model.parallel import TensorParallel  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
TP_DEGREE = 4
MODEL_CONF = os.path.join(HERE, "..", "conf", "model", "qwen3_30b_a3b_slice.yaml")
CASES = [("experts", "grouped_v2", Phase.TOKEN), ("experts", "selective_v1", Phase.TOKEN),
         ("router", "nki_topk", Phase.TOKEN), ("router", "nki_topk", Phase.CONTEXT)]


@dataclass
class Measurement:
    label: str
    shapes: str
    interp_s: float
    torch_s: float
    trace: nki_cpu.Trace
    max_rel_error: float


def real_shapes() -> LayerShapes:
    """Per-rank shapes of the real model's dimensions (the slice config) at TP=4, batch 1, bucket 128."""
    dims = ModelDims(**OmegaConf.to_container(OmegaConf.load(MODEL_CONF).dims))
    return TensorParallel(dims, TP_DEGREE).layer_shapes(1, (128,), (128,), torch.bfloat16)


def _median_seconds(fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _error(actual, expected) -> float:
    actual, expected = (actual, expected) if isinstance(actual, tuple) else ((actual,), (expected,))
    worst = 0.0
    for a, e in zip(actual, expected):
        scale = e.float().abs().max().clamp_min(1e-30)
        worst = max(worst, float((a.float() - e.float()).abs().max() / scale))
    return worst


def measure(layer: str, name: str, phase: Phase, shapes: LayerShapes, args_cache: dict) -> Measurement:
    variant = kernels.get(layer, name)
    params = variant.make_params()
    key = (layer, phase, variant.transpose_weights)
    if key not in args_cache:  # drawing the real expert weights takes seconds: once per layer and phase
        args_cache[key] = example_call(layer, phase, shapes, seed=0, transposed=variant.transpose_weights)
    call = args_cache[key]
    run = make_executor("interp", "trn2")

    def interpreted():
        with nki_cpu.recording() as traces:
            out = run(variant, params, call.args)
        return out, traces[-1]

    interp_s, (actual, trace) = _median_seconds(interpreted)
    torch_s, expected = _median_seconds(lambda: variant.reference(*call.args, params=params))
    return Measurement(f"{layer}.{name} ({phase.value})", call.label, interp_s, torch_s, trace,
                       _error(actual, expected))


def report(m: Measurement) -> str:
    engines = ", ".join(f"{engine} {count}" for engine, count in sorted(m.trace.count_by_engine().items()))
    return "\n".join([
        f"{m.label}, {m.shapes}",
        f"  interpreted {m.interp_s * 1e3:8.1f} ms   torch reference {m.torch_s * 1e3:7.1f} ms   "
        f"ratio {m.interp_s / m.torch_s:6.1f}x",
        f"  instructions {len(m.trace)} ({engines})",
        f"  MACs {m.trace.total_macs:,}   DMA bytes {m.trace.total_dma_bytes:,}   "
        f"peak SBUF {m.trace.peak_sbuf_bytes:,} B/partition   max error {m.max_rel_error:.2g} of max|ref|",
    ])


def main() -> None:
    shapes = real_shapes()
    print(f"NKI experts and router kernels, per-rank shapes at TP={TP_DEGREE}: hidden {shapes.hidden}, "
          f"{shapes.experts} experts, top-{shapes.top_k}, intermediate {shapes.intermediate}, {shapes.dtype}; "
          f"trn2 limits; median of {REPEATS}; torch threads {torch.get_num_threads()}")
    args_cache: dict = {}
    for layer, name, phase in CASES:
        print(report(measure(layer, name, phase, shapes, args_cache)))


if __name__ == "__main__":
    main()
