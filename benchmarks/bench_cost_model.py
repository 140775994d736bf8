"""Benchmark of the nki_cpu cost model on the real-shape decode MoE experts kernel.

    PYTHONPATH=src python benchmarks/bench_cost_model.py [--out DIR]

Prints, for trn2 and trn3 (LNC=2):
1. the time to trace (interpret) the decode MoE experts kernel at real shapes (H=2048, top-8 of 128
   experts, I=192 per TP rank, bf16, one token) and the time to estimate its cost;
2. its estimated kernel time against its floor: the selected experts' weight bytes over the HBM
   bandwidth of one logical core;
3. the estimator's speed at decode-step scale: the trace repeated for 48 layers.
With --out, also writes the summary tables, Perfetto traces and timeline / roofline PNGs to DIR.
Every time the cost model reports is an estimate, not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import nki_cpu  # noqa: E402
from nki_cpu import cost  # noqa: E402
from nki_cpu.trace import Trace  # noqa: E402

EXPERTS, HIDDEN, INTERMEDIATE, TOP_K = 128, 2048, 192, 8
LAYERS = 48          # Qwen3-30B-A3B decoder layers (hardware-and-model.md §7)
REPEATS = 3
LNC = 2


def weight_bytes() -> int:
    """gate_up [H, 2I] and down [I, H] of each selected expert, bf16."""
    return TOP_K * 3 * HIDDEN * INTERMEDIATE * 2


def repeated(trace: Trace, times: int) -> Trace:
    """The trace run `times` times back to back, each copy on its own allocations."""
    allocs = 1 + max((r.alloc for ins in trace.instructions for r in ins.reads + ins.writes), default=0)
    raw = []
    for copy in range(times):
        shift = copy * allocs
        for ins in trace.instructions:
            moved = dataclasses.replace(ins, seq=len(raw),
                                        reads=tuple(dataclasses.replace(r, alloc=r.alloc + shift) for r in ins.reads),
                                        writes=tuple(dataclasses.replace(r, alloc=r.alloc + shift) for r in ins.writes))
            raw.append(tuple(getattr(moved, name) for name in moved.__slots__))
    return Trace(kernel=f"{trace.kernel} x{times}", target=trace.target, raw_instructions=raw)


def timed(function, *args, **kwargs):
    """(median seconds over REPEATS calls, last result)."""
    seconds, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main(out_dir: str | None = None) -> None:
    path = os.path.join(HERE, "kernels", "moe_decode_experts.py")
    kernel = nki_cpu.load_kernel(path, "moe_decode_experts_kernel")
    inputs = nki_cpu.load_kernel(path, "make_moe_inputs")(EXPERTS, HIDDEN, INTERMEDIATE, TOP_K)
    print(f"decode MoE experts kernel (H={HIDDEN}, top-{TOP_K} of {EXPERTS}, I={INTERMEDIATE}, bf16, 1 token), "
          f"LNC={LNC}; all kernel times are cost-model ESTIMATES")
    points = {}
    for target in ("trn2", "trn3"):
        trace_s, run = timed(nki_cpu.run_kernel, kernel, *inputs, target=target)
        estimate_s, est = timed(cost.estimate, run.trace, lnc=LNC)
        bandwidth = est.hardware.hbm_bytes_per_ns(LNC)
        floor_us = weight_bytes() / bandwidth / 1e3
        print(f"\n[{target}] trace (interpret) {trace_s * 1e3:.0f} ms, estimate {estimate_s * 1e3:.0f} ms "
              f"({len(run.trace)} instructions)")
        print(f"  est. kernel time {est.time_us:.1f} us vs floor {floor_us:.1f} us "
              f"({weight_bytes() / 1e6:.2f} MB of expert weights / {bandwidth / 1e3:.3f} TB/s per logical core) "
              f"= {est.time_us / floor_us:.2f}x floor; {est.schedule.cores_used} of {LNC} physical cores used")
        busy = ", ".join(f"{k} {100 * v:.0f}%" for k, v in est.engine_busy_fraction.items())
        print(f"  est. busy: {busy}; est. HBM {est.hbm_bytes_per_s / 1e12:.3f} TB/s")
        source, op, count, ns = est.critical_path_by_source()[0]
        print(f"  est. critical path: {len(est.critical_path)} instructions, most time at "
              f"{os.path.basename(source)} {op} x{count} ({ns / 1e3:.1f} us est.)")
        step = repeated(run.trace, LAYERS)
        start = time.perf_counter()
        cost.estimate(step, lnc=LNC)
        seconds = time.perf_counter() - start
        print(f"  estimator at decode-step scale: {len(step):,} instructions ({LAYERS} layers) in {seconds:.2f} s "
              f"({len(step) / seconds:,.0f} instructions/s)")
        points[target] = est
        if out_dir:
            _write_outputs(out_dir, target, est)
    if out_dir:
        print(f"\noutputs written to {out_dir}")


def _write_outputs(out_dir: str, target: str, est: cost.KernelEstimate) -> None:
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"moe_decode_experts_{target}")
    with open(stem + "_summary.txt", "w") as handle:
        handle.write(cost.summary_table(est) + "\n")
    cost.write_perfetto(est, stem + "_perfetto.json")
    cost.plot_timeline(est, stem + "_timeline.png")
    cost.plot_roofline([est.roofline_point("MoE experts")], target, stem + "_roofline.png", lnc=LNC)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for summary tables, Perfetto traces and PNGs")
    main(parser.parse_args().out)
