"""Benchmark of every registered NKI kernel variant at real per-rank shapes (Qwen3-30B-A3B at TP=4,
batch 1; decode attention at each contest KV bucket, context encoding at each contest bucket).

    PYTHONPATH=src python benchmarks/bench_kernels.py
    BENCH_TP=2 BENCH_LAYERS=experts,router,norm BENCH_PHASES=context PYTHONPATH=src python benchmarks/bench_kernels.py

BENCH_TP picks the TP degree (per-rank shapes), BENCH_LAYERS / BENCH_PHASES restrict the variants benched.

Measured in this run: the interpreted kernel against its torch reference (medians) and its error, the
trace's instructions per engine, MACs and DMA bytes; estimated by the cost model: the kernel's Trainium
time on trn2 and trn3 (LNC=2) against its floor (the larger of its HBM bytes over the logical core's
bandwidth and its FLOPs over TensorE peak). Issue 4's goal: decode experts and attention within 1.5x
of their floor.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

import kernels  # noqa: E402
from kernels.examples import example_call  # noqa: E402
from kernels.executors import interpret  # noqa: E402
from kernels.registry import max_relative_error  # noqa: E402
from kernels.types import LayerShapes, Phase  # noqa: E402
from model.dims import ModelDims  # noqa: E402
from model.parallel import TensorParallel  # noqa: E402
from nki_cpu import cost  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
TP_DEGREE = int(os.environ.get("BENCH_TP", "4"))
LAYERS = os.environ.get("BENCH_LAYERS", "").split(",") if os.environ.get("BENCH_LAYERS") else None
PHASES = os.environ.get("BENCH_PHASES", "").split(",") if os.environ.get("BENCH_PHASES") else None
BUCKETS = (128, 256, 640)  # the contest's context and KV buckets
TARGETS = ("trn2", "trn3")


def real_shapes(bucket: int, phase: Phase) -> LayerShapes:
    preset = yaml.safe_load(open(os.path.join(HERE, "..", "conf", "model", "qwen3_30b_a3b_slice.yaml")))
    dims = ModelDims(**preset.get("model", preset)["dims"])
    context, kv = (bucket, 128) if phase is Phase.CONTEXT else (128, bucket)
    return TensorParallel(dims, TP_DEGREE).layer_shapes(1, (context,), (kv,), torch.bfloat16)


def cases() -> list[tuple[kernels.Variant, Phase, LayerShapes]]:
    found = []
    for variants in kernels.catalogue().values():
        for variant in (v for v in variants if v.nki and not v.test_only and (LAYERS is None or v.layer in LAYERS)):
            for phase in sorted(variant.phases, key=lambda p: p.value):
                if PHASES is not None and phase.value not in PHASES:
                    continue
                every = phase is Phase.CONTEXT or variant.layer == "attention"
                found.extend((variant, phase, real_shapes(b, phase)) for b in (BUCKETS if every else BUCKETS[:1]))
    return found


def _median(fn):
    times, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(variant: kernels.Variant, phase: Phase, shapes: LayerShapes, calls: dict) -> str:
    params = variant.make_params()
    key = (variant.layer, phase, variant.transpose_weights, shapes.kv_lengths, shapes.context_lengths)
    if key not in calls:  # drawing real-size weights takes seconds: once per layer, phase and layout
        calls[key] = example_call(variant.layer, phase, shapes, seed=0, transposed=variant.transpose_weights)
    call = calls[key]
    interp_s, (actual, traces) = _median(lambda: interpret(variant, params, call.args, "trn2"))
    torch_s, expected = _median(lambda: variant.reference(*call.args, params=params))
    counts = Counter()
    for trace in traces:
        counts.update(trace.count_by_engine())
    engines = ", ".join(f"{e} {n}" for e, n in sorted(counts.items()))
    lines = [
        f"{variant.layer}.{variant.name} ({phase.value}, {call.label})",
        f"  interpreted {interp_s * 1e3:8.1f} ms   torch reference {torch_s * 1e3:7.1f} ms   "
        f"ratio {interp_s / torch_s:5.1f}x   max error {max_relative_error(actual, expected):.2g} of max|ref|",
        f"  {sum(len(t) for t in traces)} instructions ({engines}); MACs {sum(t.total_macs for t in traces):,}; "
        f"DMA bytes {sum(t.total_dma_bytes for t in traces):,}",
    ]
    for target in TARGETS:
        estimates = [cost.estimate(t, target=target, lnc=2) for t in traces]
        time_us, floor_us = sum(e.time_us for e in estimates), sum(e.floor_us for e in estimates)
        lines.append(f"  est. {target}: {time_us:8.1f} us   floor {floor_us:7.1f} us   est./floor {time_us / floor_us:5.2f}x")
    return "\n".join(lines)


def main() -> None:
    print(f"== NKI kernels at real per-rank shapes (TP={TP_DEGREE}, batch 1; interpreted with trn2 limits; "
          f"median of {REPEATS}; estimates are the cost model's, LNC=2) ==")
    calls: dict = {}
    for variant, phase, shapes in cases():
        print(bench(variant, phase, shapes, calls), flush=True)


if __name__ == "__main__":
    main()
