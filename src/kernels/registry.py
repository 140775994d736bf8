"""The kernel registry: the single source of truth for which variants exist per layer type.

Config validation, `--help`, sweeps and the model's kernel slots all read it. A variant is registered by
the module that defines it; importing `kernels` imports every variant module.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf, ValidationError

from kernels.types import ALL_PHASES, LayerShapes, Phase

LAYERS = ("norm", "attention", "router", "experts", "lm_head")


class UnknownVariantError(ValueError):
    """A config named a variant that is not registered."""


class UnsupportedShapeError(ValueError):
    """A variant cannot serve the shapes the workload presents."""


@dataclass(frozen=True)
class NoParams:
    """For variants without tunables."""



def max_relative_error(actual: Any, expected: Any) -> float:
    """The error `Variant.rtol` bounds: max |actual - expected| / max |expected| (worst over tuple outputs;
    integer outputs count 1 if any element differs)."""
    if isinstance(expected, tuple):
        return max(max_relative_error(a, e) for a, e in zip(actual, expected))
    if not expected.is_floating_point():
        return float((actual != expected).any())
    scale = expected.float().abs().max().clamp_min(1e-30)
    return float((actual.float() - expected.float()).abs().max() / scale)

@dataclass(frozen=True)
class Variant:
    """One implementation of one layer type.

    `reference` is a torch function with the exact numerics the variant must reproduce. `nki` (optional) runs
    the variant's NKI kernel(s) through a `launch` callable chosen by the executor; it takes the same
    arguments as `reference`. Phases not listed in `phases` fall back to the layer's `baseline`.
    `compiled` (baselines only) computes the reference with the Neuron compiler's roundings
    (kernels.numerics); it takes the reference's arguments plus `numerics`, and its first argument may be
    an unrounded fp32 value a fused producer passes on. A variant without it is a custom call there.
    `transpose_weights` asks the model to store this layer's weight matrices transposed relative to their
    declared (logical) shapes in kernels.types, which stay the same: e.g. torch on the CPU wants
    [out, in] storage, an NKI kernel loading [in, out] tiles wants the other.
    """

    layer: str
    name: str
    summary: str
    reference: Callable[..., Any]
    params: type = NoParams
    nki: Callable[..., Any] | None = None
    phases: frozenset[Phase] = ALL_PHASES
    check_shapes: Callable[[LayerShapes, Any], list[str]] | None = None
    test_only: bool = False
    transpose_weights: bool = False
    rtol: float = 0.0  # NKI kernel vs reference, max mode: |out - ref| <= rtol * max|ref| (0: bit-exact)
    compiled: Callable[..., Any] | None = None

    def make_params(self, overrides: dict[str, Any] | None = None) -> Any:
        """The variant's params with `overrides` applied (type-checked); unknown knobs are an error naming
        the valid ones. `None` values mean "the variant's default"."""
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        known = {f.name for f in dataclasses.fields(self.params)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            valid = ", ".join(sorted(known)) or "none"
            raise ValueError(
                f"kernel_params.{self.layer}: unknown knob(s) {', '.join(unknown)} for variant "
                f"'{self.name}' (valid: {valid})"
            )
        try:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(self.params), overrides))
        except ValidationError as error:
            raise ValueError(f"kernel_params.{self.layer}: {str(error).splitlines()[0]}") from None

    def problems(self, shapes: LayerShapes, params: Any) -> list[str]:
        """Why this variant cannot serve `shapes` (empty when it can)."""
        return self.check_shapes(shapes, params) if self.check_shapes else []


_VARIANTS: dict[str, dict[str, Variant]] = {layer: {} for layer in LAYERS}


def register(variant: Variant) -> Variant:
    if variant.layer not in _VARIANTS:
        raise ValueError(f"unknown layer type '{variant.layer}' (layers: {', '.join(LAYERS)})")
    if variant.name in _VARIANTS[variant.layer]:
        raise ValueError(f"variant '{variant.layer}.{variant.name}' is registered twice")
    _VARIANTS[variant.layer][variant.name] = variant
    return variant


def names(layer: str) -> list[str]:
    return sorted(_VARIANTS[layer])


def get(layer: str, name: str) -> Variant:
    if layer not in _VARIANTS:
        raise UnknownVariantError(f"unknown layer type '{layer}' (layers: {', '.join(LAYERS)})")
    try:
        return _VARIANTS[layer][name]
    except KeyError:
        raise UnknownVariantError(
            f"kernel.{layer}={name} is not a registered variant; choose one of: {', '.join(names(layer))}"
        ) from None


def catalogue() -> dict[str, list[Variant]]:
    """Every registered variant, by layer, for listings."""
    return {layer: [_VARIANTS[layer][n] for n in names(layer)] for layer in LAYERS}
