"""Kernel variants per layer type; importing this package registers every variant."""
from kernels import attention, experts, lm_head, norm, router  # noqa: F401
from kernels.registry import LAYERS, UnknownVariantError, UnsupportedShapeError, Variant, catalogue, get, names

__all__ = ["LAYERS", "UnknownVariantError", "UnsupportedShapeError", "Variant", "catalogue", "get", "names"]
