"""How a variant runs is the platform's choice, not the model's.

- `reference`: the variant's torch reference (fastest; exact numerics by definition);
- `interp`: NKI kernels on the project's CPU interpreter (src/nki_cpu); torch-only variants run as torch.
Executors that need the Neuron SDK (`nki_sim`, `neuron`) are added by the Trainium platform.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernels.registry import Variant

Executor = Callable[[Variant, Any, tuple], Any]


def run_reference(variant: Variant, params: Any, args: tuple) -> Any:
    return variant.reference(*args, params=params)


EXECUTORS: dict[str, Executor] = {"reference": run_reference}


def get_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]
    except KeyError:
        raise ValueError(f"unknown executor '{name}'; choose one of: {', '.join(sorted(EXECUTORS))}") from None
