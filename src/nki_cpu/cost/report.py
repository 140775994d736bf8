"""Plain-text summary table of an estimate; every number is labelled as estimated."""

from __future__ import annotations

import os

from .estimate import KernelEstimate

CRITICAL_PATH_ROWS = 8


def summary_table(estimate: KernelEstimate) -> str:
    e = estimate
    ratio = e.time_ns / e.floor_ns if e.floor_ns else float("inf")
    lines = [
        f"Cost-model ESTIMATE (not a measurement): {e.kernel} on {e.target}, LNC={e.lnc} "
        f"({e.schedule.cores_used} of {e.lnc} physical cores used), {len(e.instructions)} instructions",
        f"  est. kernel time        {e.time_us:10.2f} us   ({ratio:.2f}x the est. floor)",
        f"  est. floor              {e.floor_us:10.2f} us   = max(memory {e.memory_floor_ns / 1e3:.2f} us, "
        f"compute {e.compute_floor_ns / 1e3:.2f} us)",
        f"  HBM traffic             {e.hbm_bytes / 1e6:10.3f} MB   est. {e.hbm_bytes_per_s / 1e12:.3f} TB/s "
        f"= {_pct(e.hbm_bytes_per_s, e.peak_hbm_bytes_per_s)} of {e.peak_hbm_bytes_per_s / 1e12:.3f} TB/s",
        f"  TensorE work            {e.flops / 1e9:10.3f} GFLOP est. {e.flops_per_s / 1e12:.2f} TFLOP/s "
        f"= {_pct(e.flops_per_s, e.peak_flops_per_s)} of {e.peak_flops_per_s / 1e12:.1f} TFLOP/s (BF16)",
        f"  ops without a documented cost (default used): {_counts(e.undocumented_ops)}",
        "",
        f"  {'engine':<10} {'est. busy':>12} {'est. busy %':>12}",
    ]
    busy_ns = _busy_by_kind(e)
    for kind, fraction in e.engine_busy_fraction.items():
        lines.append(f"  {kind:<10} {busy_ns[kind] / 1e3:9.2f} us {100 * fraction:11.1f}%")
    lines += ["  (dma: mean over all DMA queues; busy us summed over them)", "",
              f"  est. critical path: {len(e.critical_path)} instructions; top source lines by est. time on it:",
              f"  {'source':<48} {'op':<22} {'count':>6} {'est. us':>9}"]
    for source, op, count, ns in e.critical_path_by_source()[:CRITICAL_PATH_ROWS]:
        lines.append(f"  {_short(source):<48} {op:<22} {count:>6} {ns / 1e3:9.2f}")
    return "\n".join(lines)


def _busy_by_kind(e: KernelEstimate) -> dict[str, float]:
    totals: dict[str, float] = {}
    for track, ns in e.schedule.busy_ns.items():
        kind = track.split(".")[-1]
        kind = "dma" if kind.startswith("dma") else kind
        totals[kind] = totals.get(kind, 0.0) + ns
    return totals


def _pct(value: float, peak: float) -> str:
    return f"{100 * value / peak:.1f}%" if peak else "n/a"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())) or "none"


def _short(source: str) -> str:
    path, _, line = source.rpartition(":")
    return f"{os.path.basename(path)}:{line}"
