"""Plain-text summary table of an estimate; every number is labelled as estimated."""

from __future__ import annotations

import os

from .estimate import KernelEstimate

CRITICAL_PATH_ROWS = 8


def summary_table(estimate: KernelEstimate) -> str:
    e = estimate
    versus_floor = f"{e.time_ns / e.floor_ns:.2f}x the est. floor" if e.floor_ns else "the est. floor is 0"
    lines = [
        f"Cost-model ESTIMATE (not a measurement): {e.kernel} on {e.target}, LNC={e.lnc} "
        f"({e.schedule.cores_used} of {e.lnc} physical cores used), {len(e.instructions)} instructions",
        f"  est. kernel time        {e.time_us:10.2f} us   ({versus_floor})",
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
    for kind, fraction in e.engine_busy_fraction.items():
        lines.append(f"  {kind:<10} {fraction * e.time_us:9.2f} us {100 * fraction:11.1f}%")
    lines += ["  (mean over the physical cores in use; dma: mean over their DMA queues)", "",
              f"  est. critical path: {len(e.critical_path)} instructions; top source lines by est. time on it:",
              f"  {'source':<48} {'op':<22} {'count':>6} {'est. us':>9}"]
    for source, op, count, ns in e.critical_path_by_source()[:CRITICAL_PATH_ROWS]:
        lines.append(f"  {_short(source):<48} {op:<22} {count:>6} {ns / 1e3:9.2f}")
    return "\n".join(lines)


def _pct(value: float, peak: float) -> str:
    return f"{100 * value / peak:.1f}%" if peak else "n/a"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())) or "none"


def _short(source: str) -> str:
    path, _, line = source.rpartition(":")
    return f"{os.path.basename(path)}:{line}"
