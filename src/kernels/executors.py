"""How a variant runs is the platform's choice, not the model's.

- `reference`: every variant's torch reference (fastest; the numerics the kernels must match);
- `interp`: NKI variants run their kernels on the project's CPU interpreter (src/nki_cpu), which checks
  the target's hardware limits; torch-only variants run as torch.
An NKI variant's `nki` entry receives a `launch(kernel, *args, **kwargs)` callable and returns what its
reference returns; the executor decides what `launch` does. `kernel` is a `@nki.jit` kernel or, for an
SPMD launch over the physical cores of a logical core, the grid launch `kernel[n]`, as NKI writes it
(the interpreter runs every program instance and records them in one trace). Executors that need the Neuron SDK
(`nki_sim`, `neuron`) belong to the Trainium platform.

`compiled_executor` wraps either: it runs the baseline as the Neuron compiler would (kernels.numerics) and
every other variant as a custom call whose input is materialised in the model dtype.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernels.numerics import CompilerNumerics, materialise
from kernels.registry import Variant

Executor = Callable[[Variant, Any, tuple], Any]
Launch = Callable[..., Any]


def reference_executor(target: str) -> Executor:
    return lambda variant, params, args: variant.reference(*args, params=params)


def interp_executor(target: str) -> Executor:
    def launch(kernel: Callable, *args: Any, **kwargs: Any) -> Any:
        import nki_cpu  # lazy: only NKI variants need the interpreter

        return nki_cpu.run_kernel(kernel, *args, target=target, **kwargs).outputs

    def run(variant: Variant, params: Any, args: tuple) -> Any:
        if variant.nki is None:
            return variant.reference(*args, params=params)
        return variant.nki(*args, params=params, launch=launch)

    return run



def interpret(variant: Variant, params: Any, args: tuple, target: str) -> tuple[Any, list]:
    """Run `variant` through the interpreter: (its output, the trace of every kernel launch it made)."""
    import nki_cpu

    with nki_cpu.recording() as traces:
        output = interp_executor(target)(variant, params, args)
    return output, list(traces)

def compiled_executor(inner: Executor, numerics: CompilerNumerics) -> Executor:
    """Compiler-lowered variants (those with `compiled`) follow the compiler's rules; any other variant is a
    custom call: its first argument, the activation (fp32 when a fused producer left it unrounded), is
    materialised in the model dtype at its boundary and `inner` runs it."""

    def run(variant: Variant, params: Any, args: tuple) -> Any:
        if variant.compiled is not None:
            return variant.compiled(*args, params=params, numerics=numerics)
        return inner(variant, params, (materialise(args[0], numerics.dtype), *args[1:]))

    return run


EXECUTORS: dict[str, Callable[[str], Executor]] = {"reference": reference_executor, "interp": interp_executor}


def make_executor(name: str, target: str = "trn2") -> Executor:
    try:
        factory = EXECUTORS[name]
    except KeyError:
        raise ValueError(f"unknown executor '{name}'; choose one of: {', '.join(sorted(EXECUTORS))}") from None
    return factory(target)
