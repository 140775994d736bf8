"""The Beta 1 (`neuronxcc.nki`) modules: the interpreter's `nki` with the calls that changed.

Beta 1 kernels import `neuronxcc.nki` and `neuronxcc.nki.language`; `install` registers these
modules under those names. They are copies of the `nki` facade and `nki.language` whose Beta 1
behaviour differs where public kernels rely on it: `nl.matmul(x, y)` with the default
transpose_x=False computes x @ y for x = [M, K] with M on partitions (the Beta 1 compiler
transposed x on TensorE first); NKI 0.3/0.4 refuse it, so `import nki` keeps refusing.
"""

from __future__ import annotations

import types

from . import facade, isa, language
from .dtypes import float32
from .language_ops import _new, transpose
from .tensor import NkiTensor


def matmul(x: NkiTensor, y: NkiTensor, transpose_x: bool = False, **_ignored) -> NkiTensor:
    """Beta 1 nl.matmul: x @ y (x.T @ y with transpose_x=True) into a new fp32 PSUM tile."""
    stationary = x if transpose_x else transpose(x)
    out = _new((stationary.elems_per_partition, y.elems_per_partition), float32, language.psum)
    isa.nc_matmul(out, stationary, y)
    return out


def _copy_of(module: types.ModuleType, name: str, **overrides) -> types.ModuleType:
    made = types.ModuleType(name, module.__doc__)
    made.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    made.__dict__.update(overrides, __nki_cpu__=True)
    return made


LANGUAGE = _copy_of(language, "neuronxcc.nki.language", matmul=matmul)
NKI = _copy_of(facade, "neuronxcc.nki", language=LANGUAGE)
