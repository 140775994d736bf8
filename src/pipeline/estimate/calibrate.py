"""Model-level calibration: fit the estimate's fixed costs to device measurements and state the error.

The estimate (step.py) is linear in six fixed costs the documents do not give:

    graph_op_ns[trn2], graph_op_ns[trn3]  per compiler-built (aten) op outside NKI (graph_ops.py)
    block_ns        per block of NxD's blockwise context-encoding MoE (kernels.macs.expert_blocks)
    custom_call_ns  per NKI kernel launch inside the compiled graph
    call_ns         per model call (runtime launch, inputs in, logits out)
    host_step_ns    per generated token outside the model call (the contest harness samples on the CPU)

Everything else comes from documents or the cost model: bytes at 70% of the HBM peak, NKI kernels by the cost
model on their interpreter traces, all-reduces from a measured per-layer collective time. The points are in
calibration/model_points.yaml. The fit minimises the squared relative error with every constant >= 0; each
point is also predicted by a fit without it (leave one out). Points with `fit: false` are checks only.

`model_level_report()` returns one record per point for `make calibrate`; `python -m pipeline.estimate.calibrate`
prints the table and the fitted constants (copy them into conf/config.yaml `estimate:` with their points).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.optimize import lsq_linear

from kernels.slots import KernelSet
from kernels.types import Phase
from model.dims import ModelDims
from model.parallel import TensorParallel
from pipeline.estimate.contest import (CONTEST_BATCH, CONTEST_LNC, CONTEST_SEQ_LEN, CONTEST_TP, QWEN3_30B_A3B,
                                       QWEN3_30B_A3B_LAYERS)
from pipeline.estimate.prompts import PromptEstimate, estimate_prompt
from pipeline.estimate.settings import EstimateSettings
from pipeline.estimate.step import LAYER, ModelEstimator, Part, StepEstimate
from pipeline.estimate.tracing import KernelTracer

POINTS_FILE = Path(__file__).resolve().parents[3] / "calibration" / "model_points.yaml"
BUCKETS = (128, 256, 640)  # NxDI's CTE and TKG buckets at seq_len 640 (hardware-and-model.md §8.4)
CONSTANTS = ("graph_op_ns.trn2", "graph_op_ns.trn3", "block_ns", "custom_call_ns", "call_ns", "host_step_ns")
# Fixed, not fitted. Torch ops reach 70% of the HBM / TensorE peak (SDK nki_perf_guide's "good" DMA example,
# hardware-and-model.md §3). All-reduce: KevGomes's trn3 profile measured 13.45 us of CC ops per layer in the XLA
# graph (2 all-reduces of 4 KB): 6.725 us each = 6 ring hops of 1.12 us (the SDK's "1-2 us" per hop, §4).
# Inside his megakernel the same two took 27.77 us per layer (13.885 us each).
TORCH_OP_EFFICIENCY = 0.7
ALLREDUCE_HOP_NS = 13450.0 / 2 / 6
IN_KERNEL_ALLREDUCE_NS = 27770.0 / 2
# Host time per token with on-device sampling (first-place check only): KevGomes's e2e vs TKG throughput,
# mean over his three configurations of 1000/e2e_tok_s - TKG p50 = (15.17-14.37, 10.28-9.43, 9.03-8.15) ms.
HOST_ON_DEVICE_SAMPLING_NS = 0.84e6

DECODE_NKI = {"norm": "nki_add_rmsnorm", "router": "nki_topk", "experts": "grouped_v2", "attention": "nki_decode"}
# Which of the pipeline's kernel sets stands for each measured configuration.
KERNEL_SETS: dict[str, dict[str, str]] = {
    "baseline": {},
    "nki_experts": {"experts": "grouped_v2"},  # stands for nkilib's MoE TKG kernel, attention in XLA
    "nki_moe_block": {k: v for k, v in DECODE_NKI.items() if k != "attention"},  # NxDI's fused MoE TKG kernel
    "nki_decode": DECODE_NKI,  # the pipeline's decode NKI set: one launch per op, all-reduces in the graph
    "megakernel": DECODE_NKI,  # the same work in one launch per step, all-reduces inside the kernel
}


@dataclass(frozen=True)
class Point:
    name: str
    source: str
    target: str
    kernels: str
    quantity: str
    value_ms: float
    prompt_tokens: int
    derived: str
    fit: bool = True
    p99_ms: float | None = None


def load_points(path: Path = POINTS_FILE) -> list[Point]:
    fields = {f.name for f in dataclasses.fields(Point)}
    raws = yaml.safe_load(path.read_text())["points"]
    return [Point(**{k: v for k, v in raw.items() if k in fields}) for raw in raws]


def real_model_shapes():
    dims = ModelDims(num_hidden_layers=QWEN3_30B_A3B_LAYERS, **QWEN3_30B_A3B)
    return TensorParallel(dims, CONTEST_TP).layer_shapes(CONTEST_BATCH, BUCKETS, BUCKETS, torch.bfloat16)


def settings_for(target: str, theta: dict[str, float]) -> EstimateSettings:
    return EstimateSettings(target, CONTEST_LNC, QWEN3_30B_A3B_LAYERS, TORCH_OP_EFFICIENCY,
                            theta[f"graph_op_ns.{target}"], theta["block_ns"], theta["custom_call_ns"],
                            theta["call_ns"], ALLREDUCE_HOP_NS, theta["host_step_ns"])


def _generation(estimator: ModelEstimator, prompt_tokens: int) -> PromptEstimate:
    return estimate_prompt(estimator, 0, prompt_tokens, CONTEST_SEQ_LEN - prompt_tokens, BUCKETS, CONTEST_SEQ_LEN)


def _decode_steps(estimator: ModelEstimator, prompt_tokens: int) -> list[tuple[StepEstimate, int]]:
    return [(estimator.step(Phase.TOKEN, kv), n) for kv, n in _generation(estimator, prompt_tokens).steps.items()]


def _megakernel_ns(step: StepEstimate, parts: list[Part], launch_ns: float) -> float:
    """What a megakernel saves on `parts`: one launch instead of one per NKI call, and all-reduces inside the
    kernel at their measured time instead of the graph's."""
    launches = sum(step.count(p) for p in parts if p.source == "nki")
    reduces = sum(step.count(p) * (p.time_ns - IN_KERNEL_ALLREDUCE_NS) for p in parts if p.name == "all_reduce")
    return launches * launch_ns + reduces


def _device_ns(step: StepEstimate, megakernel: bool, launch_ns: float) -> float:
    """The model call without the host: what NxDI's latency collectors time. A megakernel launches once per
    step and runs its all-reduces inside the kernel."""
    total = step.total_ns - step.totals()["host"]
    return total - _megakernel_ns(step, list(step.parts), launch_ns) + launch_ns if megakernel else total


def _layer_ns(step: StepEstimate, megakernel: bool, launch_ns: float) -> float:
    """One decoder layer (a megakernel's single launch is not a layer's)."""
    parts = [p for p in step.parts if p.scope == LAYER]
    total = sum(step.count(p) * p.time_ns for p in parts)
    return (total - _megakernel_ns(step, parts, launch_ns) if megakernel else total) / step.layers


def _mean_over_decode(estimator: ModelEstimator, prompt_tokens: int,
                      per_step: Callable[[StepEstimate, bool, float], float], megakernel: bool) -> float:
    steps = _decode_steps(estimator, prompt_tokens)
    launch = estimator.settings.custom_call_ns
    return sum(per_step(step, megakernel, launch) * n for step, n in steps) / sum(n for _, n in steps)


def _quantity(point: Point, estimator: ModelEstimator) -> float:
    """The point's quantity estimated with the estimator's settings, in ns."""
    mega, tokens = point.kernels == "megakernel", point.prompt_tokens
    if point.quantity == "tkg_step":
        return _mean_over_decode(estimator, tokens, _device_ns, mega)
    if point.quantity == "tkg_layer":
        return _mean_over_decode(estimator, tokens, _layer_ns, mega)
    if point.quantity == "tpot_on_device_sampling":
        return _mean_over_decode(estimator, tokens, _device_ns, mega) + HOST_ON_DEVICE_SAMPLING_NS
    generation = _generation(estimator, point.prompt_tokens)
    context = estimator.step(Phase.CONTEXT, generation.context_bucket)
    if point.quantity == "cte":
        return context.total_ns - context.totals()["host"]
    if point.quantity == "host_step":
        return estimator.settings.host_step_ns
    if point.quantity == "e2e":
        return generation.e2e_ns
    raise ValueError(f"{point.name}: unknown quantity {point.quantity!r}")


@cache
def _tracer(target: str) -> KernelTracer:
    return KernelTracer(target, CONTEST_LNC)


def linear_row(point: Point) -> tuple[float, np.ndarray]:
    """(a, x) with estimate(theta) = a + x . theta in ns: the estimate is linear in the constants, so a is the
    estimate with every constant 0 and x_j the increase per unit of constant j."""
    kernels = KernelSet.from_choices(KERNEL_SETS[point.kernels])
    shapes = real_model_shapes()

    def at(theta: dict[str, float]) -> float:
        settings = settings_for(point.target, theta)
        return _quantity(point, ModelEstimator(shapes, CONTEST_TP, kernels, settings, _tracer(point.target)))

    zero = dict.fromkeys(CONSTANTS, 0.0)
    a = at(zero)
    return a, np.array([at(zero | {name: 1.0}) - a for name in CONSTANTS])


def fit(rows: list[tuple[float, np.ndarray]], measured: list[float]) -> np.ndarray:
    """Constants >= 0 minimising the sum of squared relative errors."""
    m = np.array(measured)
    x = np.array([row[1] for row in rows]) / m[:, None]
    y = (m - np.array([row[0] for row in rows])) / m
    return lsq_linear(x, y, bounds=(0.0, np.inf)).x


def predict(row: tuple[float, np.ndarray], theta: np.ndarray) -> float:
    return float(row[0] + row[1] @ theta)


def report(points: list[Point], rows: list[tuple[float, np.ndarray]]) -> tuple[np.ndarray, list[dict]]:
    """The fit over the points with `fit`, and one record per point with its in-sample and leave-one-out
    estimates (a check point's leave-one-out estimate is its estimate: it never enters the fit)."""
    measured = [p.value_ms * 1e6 for p in points]
    used = [i for i, p in enumerate(points) if p.fit]
    theta = fit([rows[i] for i in used], [measured[i] for i in used])
    records = []
    for i, point in enumerate(points):
        others = [j for j in used if j != i]
        loo_theta = fit([rows[j] for j in others], [measured[j] for j in others]) if point.fit else theta
        estimated, loo = predict(rows[i], theta), predict(rows[i], loo_theta)
        record = {"name": point.name, "level": "model", "family": point.kernels, "target": point.target,
                  "lnc": CONTEST_LNC, "quantity": point.quantity, "fit": point.fit, "measured_ns": measured[i],
                  "estimated_ns": estimated, "loo_estimated_ns": loo,
                  "error_pct": 100 * (estimated / measured[i] - 1), "loo_error_pct": 100 * (loo / measured[i] - 1),
                  "derived": point.derived, "source": point.source}
        if point.p99_ms is not None:
            record["p99_error_pct"] = 100 * (estimated / (point.p99_ms * 1e6) - 1)
        records.append(record)
    return theta, records


BAND_QUANTITIES = {"TTFT": ("cte",), "TKG": ("tkg_step",), "host": ("host_step",), "e2e": ("e2e",)}


def bands(records: list[dict]) -> dict[str, float]:
    """Per reported quantity: the largest leave-one-out |error| over its fitted points."""
    out = {}
    for name, quantities in BAND_QUANTITIES.items():
        errors = [abs(r["loo_error_pct"]) / 100 for r in records if r["fit"] and r["quantity"] in quantities]
        if errors:
            out[name] = max(errors)
    return out


def model_level_report(path: Path = POINTS_FILE) -> list[dict]:
    """One record per model-level point, in the kernel-level records' form (pipeline.calibrate): name, level,
    family (the kernel set), target, measured_ns, estimated_ns, loo_estimated_ns, error_pct, loo_error_pct, ..."""
    points = load_points(path)
    return report(points, [linear_row(p) for p in points])[1]


def main() -> None:
    points = load_points()
    theta, records = report(points, [linear_row(p) for p in points])
    print(f"{'point':32} {'target':6} {'measured ms':>11} {'est. ms':>10} {'err':>7} {'LOO est.':>10} {'LOO err':>8}")
    for r in records:
        notes = [f"vs p99 {r['p99_error_pct']:+.1f}%"] if "p99_error_pct" in r else []
        notes += [] if r["fit"] else ["check"]
        print(f"{r['name']:32} {r['target']:6} {r['measured_ns'] / 1e6:11.3f} {r['estimated_ns'] / 1e6:10.3f} "
              f"{r['error_pct']:+6.1f}% {r['loo_estimated_ns'] / 1e6:10.3f} {r['loo_error_pct']:+7.1f}%  "
              f"{', '.join(notes)}")
    fitted = [r for r in records if r["fit"]]
    median = statistics.median(abs(math.log(r["loo_estimated_ns"] / r["measured_ns"])) for r in fitted)
    print(f"median |log(LOO estimate / measured)| {median:.3f} over {len(fitted)} fitted points")
    print("constants (us): " + ", ".join(f"{n} = {v / 1e3:.4g}" for n, v in zip(CONSTANTS, theta)))
    print("bands: " + ", ".join(f"{k} ±{v:.1%}" for k, v in bands(records).items()))


if __name__ == "__main__":
    main()
