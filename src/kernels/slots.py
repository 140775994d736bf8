"""Kernel slots: what the model calls for each layer type, resolved once from the config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from kernels.executors import Executor, compiled_executor, make_executor
from kernels.numerics import CompilerNumerics
from kernels.registry import LAYERS, Variant, get
from kernels.types import Phase


# How often the model calls each slot: per decoder layer, and once per model call (final norm, vocabulary
# projection). The compile stage's MAC counts and the time estimate both build on it.
CALLS_PER_LAYER = {"norm": 2, "attention": 1, "router": 1, "experts": 1}
CALLS_PER_MODEL = {"norm": 1, "lm_head": 1}


@dataclass(frozen=True)
class KernelSlot:
    """One layer type's selected variant, its params, and the baseline it falls back to outside its phases."""

    variant: Variant
    params: Any
    baseline: Variant
    executor: Executor
    baseline_params: Any = field(init=False)  # made once: make_params validates through OmegaConf

    def __post_init__(self) -> None:
        object.__setattr__(self, "baseline_params", self.baseline.make_params())

    def resolve(self, phase: Phase) -> tuple[Variant, Any]:
        if phase in self.variant.phases:
            return self.variant, self.params
        return self.baseline, self.baseline_params

    def __call__(self, phase: Phase, *args: Any) -> Any:
        variant, params = self.resolve(phase)
        with torch.profiler.record_function(f"kernel.{variant.layer}.{variant.name}"):
            return self.executor(variant, params, args)


@dataclass(frozen=True)
class KernelSet:
    slots: dict[str, KernelSlot]

    @classmethod
    def from_choices(
        cls,
        choices: dict[str, str],
        params: dict[str, dict[str, Any]] | None = None,
        executor: str = "reference",
        target: str = "trn2",
        numerics: CompilerNumerics | None = None,
    ) -> KernelSet:
        """`choices` maps layer type to variant name (missing layers use `baseline`). With `numerics`, the
        baseline runs with the compiler's roundings and every other variant as a custom call whose input is
        materialised in the model dtype (kernels.executors.compiled_executor)."""
        unknown = sorted(set(choices) - set(LAYERS))
        if unknown:
            raise ValueError(f"unknown layer type(s) {', '.join(unknown)}; layers: {', '.join(LAYERS)}")
        run = make_executor(executor, target)
        if numerics is not None:
            run = compiled_executor(run, numerics)
        slots = {}
        for layer in LAYERS:
            variant = get(layer, choices.get(layer, "baseline"))
            overrides = (params or {}).get(layer) or {}
            slots[layer] = KernelSlot(variant, variant.make_params(overrides), get(layer, "baseline"), run)
        return cls(slots)

    @classmethod
    def baseline(cls, executor: str = "reference", target: str = "trn2",
                 numerics: CompilerNumerics | None = None) -> KernelSet:
        return cls.from_choices({}, executor=executor, target=target, numerics=numerics)

    def __getattr__(self, layer: str) -> KernelSlot:
        try:
            return self.slots[layer]
        except KeyError:
            raise AttributeError(layer) from None

    def choices(self) -> dict[str, str]:
        return {layer: slot.variant.name for layer, slot in self.slots.items()}

    def fallbacks(self) -> dict[str, list[str]]:
        """Phases in which each layer runs its baseline instead of the selected variant."""
        return {
            layer: [p.value for p in Phase if p not in slot.variant.phases]
            for layer, slot in self.slots.items()
            if any(p not in slot.variant.phases for p in Phase)
        }
