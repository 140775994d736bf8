"""The module that `import nki` resolves to after `nki_cpu.install()`."""

from __future__ import annotations

from . import compiler, isa, kernel_typing, language
from .errors import NkiUnsupportedError
from .runtime import jit, simulate

__nki_cpu__ = True
__version__ = "0.3.0+nki_cpu"
typing = kernel_typing
tensor = language.NkiTensor
dtype = language.NkiDtype


def _beta1_only(api: str):
    def function(*args, **kwargs):
        raise NkiUnsupportedError(f"nki.{api}", "Beta 1 API, not available in NKI 0.2/0.3")
    function.__name__ = api
    return function


benchmark = _beta1_only("benchmark")
profile = _beta1_only("profile")
baremetal = _beta1_only("baremetal")
simulate_kernel = _beta1_only("simulate_kernel")

__all__ = ["jit", "simulate", "language", "isa", "typing", "compiler", "tensor", "dtype"]
