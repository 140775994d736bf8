"""NKI kernels in the estimate: interpreter traces of a variant at one bucket's per-rank shapes and their
cost-model estimates, cached. Every decoder layer presents the same shapes, so a decode step traces each
distinct (variant, phase, bucket) once, however many layers it has."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kernels.examples import example_call
from kernels.executors import interpret
from kernels.registry import Variant
from kernels.types import LayerShapes, Phase
from nki_cpu import cost
from nki_cpu.trace import Trace


def bucket_shapes(shapes: LayerShapes, phase: Phase, bucket: int) -> LayerShapes:
    """`shapes` narrowed to one bucket of `phase` (kernels.examples reads the first context and KV lengths);
    the other phase keeps its first bucket, as the compile stage traces."""
    if phase is Phase.CONTEXT:
        return dataclasses.replace(shapes, context_lengths=(bucket,), kv_lengths=shapes.kv_lengths[:1])
    return dataclasses.replace(shapes, context_lengths=shapes.context_lengths[:1], kv_lengths=(bucket,))


@dataclass(frozen=True)
class KernelKey:
    layer: str
    variant: str
    params: str  # repr of the variant's params (frozen dataclasses)
    phase: Phase
    shapes: LayerShapes

    @classmethod
    def of(cls, layer: str, variant: Variant, params: Any, phase: Phase, shapes: LayerShapes) -> KernelKey:
        return cls(layer, variant.name, repr(params), phase, shapes)


def trace_variant(layer: str, variant: Variant, params: Any, phase: Phase, shapes: LayerShapes,
                  target: str) -> list[Trace]:
    """The traces of every kernel launch one call of `variant` makes on example inputs at `shapes`."""
    call = example_call(layer, phase, shapes, transposed=variant.transpose_weights)
    return interpret(variant, params, call.args, target)[1]


class KernelTracer:
    """Traces and estimates of NKI variants on one target and LNC, cached by `KernelKey`."""

    def __init__(self, target: str, lnc: int):
        self.target, self.lnc = target, lnc
        self._traces: dict[KernelKey, list[Trace]] = {}
        self._estimates: dict[KernelKey, list[cost.KernelEstimate]] = {}

    def seed(self, key: KernelKey, traces: list[Trace]) -> None:
        """Traces recorded elsewhere (the compile stage) at the key's shapes."""
        self._traces.setdefault(key, traces)

    def traces(self, key: KernelKey, variant: Variant, params: Any) -> list[Trace]:
        if key not in self._traces:
            self._traces[key] = trace_variant(key.layer, variant, params, key.phase, key.shapes, self.target)
        return self._traces[key]

    def estimates(self, key: KernelKey, variant: Variant, params: Any) -> list[cost.KernelEstimate]:
        """One estimate per launch, in launch order."""
        if key not in self._estimates:
            self._estimates[key] = [cost.estimate(t, self.target, self.lnc) for t in self.traces(key, variant, params)]
        return self._estimates[key]

    @property
    def traced(self) -> int:
        """Distinct kernel calls traced or seeded so far."""
        return len(self._traces)
