"""Calibration of the cost model against published device measurements of NKI kernels.

A point (one entry of `calibration/points.yaml`) names a kernel of ours that issues the same instruction
stream as a published kernel, its inputs, the target and LNC it was measured on, and the measured time with
how it was derived. Each point is traced once through the interpreter; the estimate is then recomputed for
candidate values of the few FITTED constants of `Hardware` (re-estimating a trace is cheap, tracing is not).

The fit minimises the squared log error of estimated against measured time over the points, on a grid of
each fitted constant; the leave-one-out prediction of a point is the estimate at the value fitted without
it, the honest figure of how well the model predicts a kernel it was not fitted on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from ..trace import Trace
from .estimate import KernelEstimate, estimate
from .hardware import Hardware, hardware

# The constants the fit may move, each with the grid it searches (the documented bounds in hardware.py).
FITTED: dict[str, tuple[float, ...]] = {
    "dma_descriptor_ns": tuple(float(v) for v in range(0, 65, 4)),
}


@dataclass(frozen=True)
class Original:
    """Where the published kernel lives: run unmodified with `--sources` when a checkout is at hand."""

    repo: str
    rev: str
    path: str
    function: str


@dataclass(frozen=True)
class Point:
    name: str
    family: str
    target: str
    lnc: int
    kernel: str                      # "<file relative to the points file>::<function>"
    inputs: tuple[tuple, ...]        # (shape..., dtype) per argument
    measured_ns: float
    quantity: str                    # what was measured: a key of QUANTITIES
    measured: str                    # the published figure, in words
    derived: str                     # how measured_ns follows from it
    source: str
    original: Original | None = None


def _kernel_time(est: KernelEstimate) -> float:
    return est.time_ns


def _first_dma_engine_busy(est: KernelEstimate) -> float:
    """The busy time of the first DMA instruction on its first queue (what a profile shows per engine)."""
    first = next(p for p in est.instructions if p.engine == "dma")
    piece = first.slices[0]
    return piece.end - piece.start


QUANTITIES: dict[str, Callable[[KernelEstimate], float]] = {
    "kernel_time": _kernel_time,
    "first_dma_engine_busy": _first_dma_engine_busy,
}


def load_points(path: Path) -> list[Point]:
    """The points of a YAML file, checked: unknown quantities and targets fail here, not mid-run."""
    raw = yaml.safe_load(path.read_text())
    points = []
    for entry in raw["points"]:
        original = entry.pop("original", None)
        entry["inputs"] = tuple(tuple(arg) for arg in entry["inputs"])
        point = Point(**entry, original=Original(**original) if original else None)
        if point.quantity not in QUANTITIES:
            raise ValueError(f"{path}: point {point.name}: unknown quantity {point.quantity!r}; "
                             f"choose one of {sorted(QUANTITIES)}")
        hardware(point.target)
        points.append(point)
    return points


def example_inputs(point: Point, seed: int = 0) -> list[np.ndarray]:
    """Random inputs of the point's shapes and dtypes (timing does not depend on the values)."""
    from ..dtypes import as_dtype

    rng = np.random.default_rng(seed)
    arrays = []
    for *shape, dtype in point.inputs:
        storage = as_dtype(dtype).storage
        arrays.append(rng.standard_normal(shape).astype(np.float32).astype(storage))
    return arrays


def trace_point(point: Point, kernel_file: Path, function: str) -> Trace:
    """Run one kernel file's function on the point's inputs through the interpreter."""
    import nki_cpu

    kernel = nki_cpu.load_kernel(kernel_file, function)
    return nki_cpu.run_kernel(kernel, *example_inputs(point), target=point.target).trace


def own_kernel(point: Point, points_dir: Path) -> tuple[Path, str]:
    file, function = point.kernel.split("::")
    return points_dir / file, function


def original_kernel(point: Point, sources: Path, workdir: Path) -> tuple[Path, str] | None:
    """The published file at its revision, from a git checkout `sources/<repo name>` (None if absent)."""
    import subprocess

    if point.original is None:
        return None
    checkout = sources / point.original.repo.split("/")[-1]
    if not checkout.is_dir():
        return None
    shown = subprocess.run(["git", "-C", str(checkout), "show", f"{point.original.rev}:{point.original.path}"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    target = workdir / point.name.replace("/", "_") / Path(point.original.path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(shown.stdout)
    return target, point.original.function


def estimated_ns(point: Point, trace: Trace, hw: Hardware | None = None) -> float:
    return QUANTITIES[point.quantity](estimate(trace, point.target, point.lnc, hw=hw))


@dataclass
class FitResult:
    """The fitted values, and per point the in-sample and leave-one-out estimates."""

    values: dict[str, float]
    estimated: dict[str, float]
    loo_values: dict[str, dict[str, float]]
    loo_estimated: dict[str, float]


def _grid() -> list[dict[str, float]]:
    names = list(FITTED)
    combos: list[dict[str, float]] = [{}]
    for name in names:
        combos = [{**combo, name: v} for combo in combos for v in FITTED[name]]
    return combos


def with_values(hw: Hardware, values: dict[str, float]) -> Hardware:
    """`hw` with some constants replaced (the fit tries values through it)."""
    return dataclasses.replace(hw, **values)


def fit(points: list[Point], traces: dict[str, Trace]) -> FitResult:
    """Grid search of the FITTED constants minimising the summed squared log error, and the
    leave-one-out fit for every point."""
    grid = _grid()
    table = np.array([[estimated_ns(p, traces[p.name], with_values(hardware(p.target), values)) for values in grid]
                      for p in points])
    measured = np.array([p.measured_ns for p in points])
    sq = np.log(table / measured[:, None]) ** 2
    best = int(np.argmin(sq.sum(axis=0)))
    loo_values, loo_estimated = {}, {}
    for i, point in enumerate(points):
        others = np.delete(sq, i, axis=0).sum(axis=0)
        j = int(np.argmin(others))
        loo_values[point.name] = grid[j]
        loo_estimated[point.name] = float(table[i, j])
    return FitResult(grid[best], {p.name: float(table[i, best]) for i, p in enumerate(points)},
                     loo_values, loo_estimated)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        out = np.empty(len(values))
        sorted_values = np.asarray(values)[order]
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
                j += 1
            out[order[i:j + 1]] = (i + j) / 2.0
            i = j + 1
        return out
    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def error_summary(measured: list[float], estimated: list[float]) -> dict[str, float]:
    """Median and max |log(est/measured)|, the worst relative error, and the share within ±30%."""
    logs = [abs(math.log(e / m)) for m, e in zip(measured, estimated)]
    rel = [e / m - 1.0 for m, e in zip(measured, estimated)]
    return {
        "median_abs_log": float(np.median(logs)),
        "max_abs_log": max(logs),
        "max_abs_rel": max(abs(r) for r in rel),
        "within_30pct": sum(abs(r) <= 0.30 for r in rel) / len(rel),
    }
