"""One model call's estimated Trainium time on one TP rank (the ranks run the same work in lockstep):
context encoding at a bucket, or one decode step at a KV bucket.

    total = layers x (sum of the per-layer parts) + (sum of the per-call parts) + runtime + host

Per-layer parts: the input and post-attention norms, attention, router and experts of an NxDI decoder layer
(hardware-and-model.md §7.3), and its two all-reduces (after o_proj and after the MoE, §4). Per-call parts:
the embedding, the final norm, the lm_head and its vocabulary gather, the runtime's cost of one model call
(launch, inputs in, logits out) and the host's time per generated token (HF loop, CPU sampling). A slot whose
variant runs NKI in the phase is estimated by the cost model on its interpreter traces at the bucket's per-rank
shapes plus a fixed cost per launch (a custom-call boundary in the compiled graph); every other op by the
roofline of its bytes and FLOPs (ops.py) at the configured efficiency plus a fixed cost per compiler-built op
it issues (graph_ops.py) or, for the blockwise context-encoding MoE, per block. The fixed costs are fitted to
device measurements (calibrate.py).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from kernels.experts.baseline import uses_selective_loading
from kernels.macs import expert_blocks
from kernels.slots import CALLS_PER_LAYER, CALLS_PER_MODEL, KernelSet
from kernels.types import LayerShapes, Phase
from nki_cpu.cost import roofline_op
from pipeline.estimate.collectives import ring_all_gather_ns, ring_all_reduce_ns
from pipeline.estimate.graph_ops import graph_ops
from pipeline.estimate.tracing import KernelKey, KernelTracer, bucket_shapes
from pipeline.estimate.ops import TORCH_OPS, tokens
from pipeline.estimate.settings import EstimateSettings

LAYER, CALL = "layer", "call"  # a part repeats in every decoder layer, or runs once per model call
LAYER_OPS = tuple(CALLS_PER_LAYER.items())
CALL_OPS = (("embedding", 1), *CALLS_PER_MODEL.items())
ALL_REDUCES_PER_LAYER = 2


@dataclass(frozen=True)
class Part:
    """One op of a model call; times are per call, in ns, estimated."""

    name: str  # op: norm, attention, ..., all_reduce, lm_head_gather, runtime, host
    source: str  # nki (cost model on traces) | torch (roofline) | collective | runtime | host
    variant: str  # the kernel variant, or the collective algorithm
    scope: str  # LAYER or CALL
    calls: int  # per decoder layer (LAYER) or per model call (CALL)
    time_ns: float
    floor_ns: float  # the op's own bytes and FLOPs at peak (cost-model or roofline floor); 0 for collectives, host
    weight_bytes: float  # what any implementation must read: weights, and the KV cache in decode


@dataclass(frozen=True)
class StepEstimate:
    phase: Phase
    bucket: int
    layers: int
    parts: tuple[Part, ...]
    hbm_bytes_per_ns: float  # one logical core

    def count(self, part: Part) -> int:
        """Calls of `part` in this model call."""
        return part.calls * (self.layers if part.scope == LAYER else 1)

    @property
    def total_ns(self) -> float:
        return sum(self.count(p) * p.time_ns for p in self.parts)

    @property
    def weight_floor_ns(self) -> float:
        """The physical floor: weight (and KV) bytes of the call over the logical core's HBM bandwidth."""
        return sum(self.count(p) * p.weight_bytes for p in self.parts) / self.hbm_bytes_per_ns

    def totals(self, key: Callable[[Part], str] = lambda p: p.name) -> dict[str, float]:
        """Total ns per `key` (default: per op name)."""
        sums: dict[str, float] = defaultdict(float)
        for part in self.parts:
            sums[key(part)] += self.count(part) * part.time_ns
        return dict(sums)


class ModelEstimator:
    """Steps of one kernel set at a workload's per-rank shapes, cached per (phase, bucket)."""

    def __init__(self, shapes: LayerShapes, tp_degree: int, kernels: KernelSet, settings: EstimateSettings,
                 tracer: KernelTracer | None = None):
        self.shapes, self.tp_degree, self.kernels, self.settings = shapes, tp_degree, kernels, settings
        self.tracer = tracer or KernelTracer(settings.target, settings.lnc)
        self._steps: dict[tuple[Phase, int], StepEstimate] = {}

    def step(self, phase: Phase, bucket: int) -> StepEstimate:
        if (phase, bucket) not in self._steps:
            self._steps[(phase, bucket)] = self._estimate(phase, bucket_shapes(self.shapes, phase, bucket), bucket)
        return self._steps[(phase, bucket)]

    def _estimate(self, phase: Phase, shapes: LayerShapes, bucket: int) -> StepEstimate:
        parts = [self._op(name, calls, LAYER, phase, shapes) for name, calls in LAYER_OPS]
        parts += [self._op(name, calls, CALL, phase, shapes) for name, calls in CALL_OPS]
        parts += self._collectives(phase, shapes)
        parts.append(Part("runtime", "runtime", "runtime", CALL, 1, self.settings.call_ns, 0.0, 0.0))
        parts.append(Part("host", "host", "host", CALL, 1, self.settings.host_step_ns, 0.0, 0.0))
        return StepEstimate(phase, bucket, self.settings.layers, tuple(parts), self.settings.hbm_bytes_per_ns)

    def _op(self, name: str, calls: int, scope: str, phase: Phase, shapes: LayerShapes) -> Part:
        need = TORCH_OPS[name](shapes, phase)
        slot = self.kernels.slots.get(name)
        variant, params = slot.resolve(phase) if slot else (None, None)
        if variant is not None and variant.nki is not None:
            launches = self.tracer.estimates(KernelKey.of(name, variant, params, phase, shapes), variant, params)
            time = sum(e.time_ns for e in launches) + len(launches) * self.settings.custom_call_ns
            return Part(name, "nki", variant.name, scope, calls, time, sum(e.floor_ns for e in launches),
                        need.weight_bytes)
        s = self.settings
        op = roofline_op(need.flops, need.hbm_bytes, s.target, s.lnc, need.dtype, self._fixed_ns(name, phase, shapes),
                         name, s.torch_op_efficiency)
        return Part(name, "torch", variant.name if variant else "torch", scope, calls, op.time_ns, op.floor_ns,
                    need.weight_bytes)

    def _fixed_ns(self, name: str, phase: Phase, shapes: LayerShapes) -> float:
        """Fixed cost of a compiler-built op: per aten op it issues, and per block of the blockwise MoE."""
        fixed = graph_ops(name, phase) * self.settings.graph_op_ns
        t = tokens(shapes, phase)
        if name == "experts" and phase is Phase.CONTEXT and not uses_selective_loading(t, shapes.top_k, shapes.experts):
            fixed += expert_blocks(t, shapes.top_k, shapes.experts) * self.settings.block_ns
        return fixed

    def _collectives(self, phase: Phase, shapes: LayerShapes) -> list[Part]:
        s, ranks, itemsize = self.settings, self.tp_degree, shapes.dtype.itemsize
        hidden_bytes = itemsize * tokens(shapes, phase) * shapes.hidden
        rows = shapes.batch if phase is Phase.CONTEXT else tokens(shapes, phase)
        logits_bytes = itemsize * rows * shapes.vocab * ranks
        algorithm = f"ring over {ranks} ranks"
        return [
            Part("all_reduce", "collective", algorithm, LAYER, ALL_REDUCES_PER_LAYER,
                 ring_all_reduce_ns(hidden_bytes, ranks, s.allreduce_hop_ns, s.hbm_bytes_per_ns), 0.0, 0.0),
            Part("lm_head_gather", "collective", algorithm, CALL, 1,
                 ring_all_gather_ns(logits_bytes, ranks, s.allreduce_hop_ns, s.hbm_bytes_per_ns), 0.0, 0.0),
        ]
