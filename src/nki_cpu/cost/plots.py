"""Figures of estimates: an engine timeline and a roofline (PNG, matplotlib without pyplot state)."""

from __future__ import annotations

import os
from typing import Iterable

from .estimate import KernelEstimate
from .hardware import hardware
from .roofline import RooflinePoint

_ENGINE_COLOURS = {"tensor": "tab:blue", "vector": "tab:green", "scalar": "tab:orange", "gpsimd": "tab:purple",
                   "dma": "tab:gray"}


def agg_figure(size: tuple[float, float]):
    """A figure with its own Agg canvas (no pyplot global state). matplotlib is imported here so that
    `import nki_cpu.cost` stays cheap for callers that only estimate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def plot_timeline(estimate: KernelEstimate, path: str | os.PathLike) -> str:
    """One row per engine and DMA queue, one bar per instruction slice; the critical path in red."""
    tracks = estimate.schedule.tracks
    rows = {track: i for i, track in enumerate(tracks)}
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for placed in estimate.instructions:
        for piece in placed.slices:
            bars.setdefault((rows[piece.track], placed.engine), []).append(
                (piece.start / 1e3, (piece.end - piece.start) / 1e3))
    figure = agg_figure((12, 0.28 * len(tracks) + 1.6))
    axes = figure.add_subplot()
    for (row, engine), spans in bars.items():
        axes.broken_barh(spans, (row - 0.4, 0.8), facecolors=_ENGINE_COLOURS.get(engine, "black"), linewidth=0)
    for step in estimate.critical_path:
        for piece in step.slices:
            axes.broken_barh([(piece.start / 1e3, (piece.end - piece.start) / 1e3)], (rows[piece.track] - 0.45, 0.9),
                             facecolors="none", edgecolors="red", linewidth=0.8)
    axes.set_yticks(range(len(tracks)), tracks, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("time (us, estimated)")
    axes.set_xlim(0, max(estimate.time_us, 1e-3))
    axes.set_title(f"est. timeline: {estimate.kernel} on {estimate.target} LNC={estimate.lnc}, "
                   f"est. {estimate.time_us:.2f} us (floor est. {estimate.floor_us:.2f} us); red = critical path")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return os.fspath(path)


def plot_roofline(points: Iterable[RooflinePoint], target: str, path: str | os.PathLike, lnc: int = 2) -> str:
    """Kernel points (FLOP per HBM byte, achieved FLOP/s) under the target's roofs for one logical core; points
    without FLOPs (no matmuls) are listed in a corner with their share of the HBM bandwidth."""
    hw = hardware(target)
    points = list(points)
    bandwidth = hw.hbm_bytes_per_ns(lnc) * 1e9
    roofs = {"BF16 peak": hw.peak_flops_per_ns(lnc) * 1e9,
             f"{hw.low_precision_name} peak": hw.peak_flops_per_ns(lnc) * hw.low_precision_speedup * 1e9,
             "FP32 peak": hw.peak_flops_per_ns(lnc, "float32") * 1e9}
    finite = [p.intensity for p in points if 0 < p.intensity < float("inf")]
    lo = min(finite + [0.1]) / 4
    hi = max(finite + [4 * max(roofs.values()) / bandwidth]) * 4
    figure = agg_figure((8, 5.5))
    axes = figure.add_subplot()
    for (name, peak), style in zip(roofs.items(), ("-", "--", ":")):
        ridge = peak / bandwidth
        axes.plot([lo, ridge, hi], [lo * bandwidth, peak, peak], style, color="black", linewidth=1,
                  label=f"{name} {peak / 1e12:.0f} TFLOP/s, HBM {bandwidth / 1e12:.3f} TB/s")
    unplaced = []
    for point in points:
        if 0 < point.intensity < float("inf") and point.flops_per_s > 0:
            axes.plot(point.intensity, point.flops_per_s, "o")
            axes.annotate(f"{point.label} (est.)", (point.intensity, point.flops_per_s), fontsize=8,
                          xytext=(4, 4), textcoords="offset points")
        else:
            unplaced.append(point)
    if unplaced:
        # A kernel without matmuls has no FLOP/s to plot; its HBM bandwidth is the figure that matters.
        rows = [f"{p.label}: est. {p.time_ns / 1e3:.2f} us, {p.hbm_bytes / p.time_ns * 1e9 / bandwidth:.1%} of HBM peak"
                if p.time_ns else f"{p.label}: no time" for p in unplaced]
        axes.text(0.02, 0.98, "no TensorE FLOPs (not placed):\n" + "\n".join(rows), transform=axes.transAxes,
                  va="top", fontsize=7)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity (FLOP per HBM byte)")
    axes.set_ylabel("FLOP/s (estimated)")
    axes.set_title(f"est. roofline, {hw.name} logical core (LNC={lnc})")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return os.fspath(path)
