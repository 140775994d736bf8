"""The NKI 0.3 `nl` convenience layer, built only from the `nisa` instructions.

Each function allocates its result in SBUF (nl.matmul: PSUM) and issues the instructions the
compiler would, so the trace shows real instructions. Binary operators do not broadcast (as on
hardware): a second operand is either a same-shape tile or a scalar / (P, 1) tile.
"""

from __future__ import annotations

import numpy as np

from . import isa
from .checks import usage
from .dtypes import NkiDtype, as_dtype, bfloat16, float32
from .errors import NkiUnsupportedError
from .ops import OPS, Op
from .tensor import NkiTensor

__all__ = ["load", "store", "load_transpose2d", "transpose", "matmul", "softmax", "rms_norm", "sum", "max", "min",
           "mean", "prod", "var", "all", "where", "negative", "expand_dims", "broadcast_to", "gather_flattened",
           "random_seed", "dropout", "ceil", "floor", "trunc"]


def _new(shape, dtype, buffer=None) -> NkiTensor:
    from .language import ndarray, sbuf
    return ndarray(tuple(shape), dtype, buffer=buffer or sbuf)


def _promote(a: NkiDtype, b: NkiDtype) -> NkiDtype:
    """Beta 1 promotion for mixed dtypes (nki-api.md §5): the surprising pairs spelled out."""
    if a == b:
        return a
    pair = {a.name, b.name}
    if pair == {"float16", "bfloat16"} or "float32" in pair or pair == {"int32", "uint32"}:
        return float32
    if pair == {"float8_e4m3", "float8_e5m2"}:
        return bfloat16
    floats = [d for d in (a, b) if d.is_float]
    if len(floats) == 1:
        return floats[0]
    return a if a.itemsize >= b.itemsize else b


def _result_dtype(dtype, *values) -> NkiDtype:
    if dtype is not None:
        return as_dtype(dtype)
    tiles = [v.dtype for v in values if isinstance(v, NkiTensor)]
    out = tiles[0]
    for other in tiles[1:]:
        out = _promote(out, other)
    return out


def apply_op(op: Op, x, y=None, dtype=None, **_ignored):
    """nl.<op>(x[, y], dtype=None): tensor_tensor, tensor_scalar, activation or tensor_copy."""
    if op.name == "copy":
        out = _new(x.shape, _result_dtype(dtype, x))
        isa.tensor_copy(out, x)
        return out
    if op.binary is not None:
        if y is None:
            usage(f"nl.{op.name}", "needs two operands")
        out = _new((x if isinstance(x, NkiTensor) else y).shape, _result_dtype(dtype, x, y))
        if isinstance(x, NkiTensor) and isinstance(y, NkiTensor) and x.shape == y.shape:
            isa.tensor_tensor(out, x, y, op)
        elif isinstance(x, NkiTensor):
            isa.tensor_scalar(out, x, op, y)
        else:
            isa.tensor_scalar(out, y, op, x, reverse0=True)
        return out
    out = _new(x.shape, _result_dtype(dtype, x))
    if op.activation is not None:
        isa.activation(out, op, x)
    else:
        isa.tensor_scalar(out, x, op, None)
    return out


def load(src: NkiTensor, dtype=None, **_ignored) -> NkiTensor:
    out = _new(src.shape, _result_dtype(dtype, src))
    isa.dma_copy(out, src)
    return out


def store(dst: NkiTensor, value: NkiTensor, **_ignored) -> None:
    isa.dma_copy(dst, value)


def load_transpose2d(src: NkiTensor, dtype=None, **_ignored) -> NkiTensor:
    rows, cols = src.shape
    out = _new((cols, rows), _result_dtype(dtype, src))
    isa.dma_transpose(out, src)
    return out


def transpose(x: NkiTensor, dtype=None, **_ignored) -> NkiTensor:
    """2-D transpose through TensorE (PSUM), evicted to SBUF."""
    from .language import psum
    parts, free = x.shape[0], x.elems_per_partition
    staged = _new((free, parts), x.dtype, psum)
    isa.nc_transpose(staged, x)
    out = _new((free, parts), _result_dtype(dtype, x))
    isa.tensor_copy(out, staged)
    return out


def matmul(x: NkiTensor, y: NkiTensor, transpose_x: bool = False, **_ignored) -> NkiTensor:
    """x.T @ y into a new fp32 PSUM tile (only transpose_x=True works in NKI 0.3/0.4)."""
    from .language import psum
    if not transpose_x:
        raise NkiUnsupportedError("nl.matmul(transpose_x=False)", "NKI 0.3/0.4 support only transpose_x=True")
    out = _new((x.elems_per_partition, y.elems_per_partition), float32, psum)
    isa.nc_matmul(out, x, y)
    return out


def _reduce(op: Op, x: NkiTensor, axis, dtype, keepdims) -> NkiTensor:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = sorted(a % len(x.shape) for a in axes)
    shape = [1 if i in axes else s for i, s in enumerate(x.shape)] if keepdims else \
        [s for i, s in enumerate(x.shape) if i not in axes]
    if len(shape) < 2:
        shape = shape + [1] * (2 - len(shape))
    out = _new(shape, _result_dtype(dtype, x))
    isa.tensor_reduce(out, op, x, axis=tuple(axes), keepdims=keepdims)
    return out


def sum(x, axis, dtype=None, keepdims=False, **_ignored):  # noqa: A001
    return _reduce(OPS["add"], x, axis, dtype, keepdims)


def max(x, axis, dtype=None, keepdims=False, **_ignored):  # noqa: A001
    return _reduce(OPS["maximum"], x, axis, dtype, keepdims)


def min(x, axis, dtype=None, keepdims=False, **_ignored):  # noqa: A001
    return _reduce(OPS["minimum"], x, axis, dtype, keepdims)


def prod(x, axis, dtype=None, keepdims=False, **_ignored):
    return _reduce(OPS["multiply"], x, axis, dtype, keepdims)


def mean(x, axis, dtype=None, keepdims=False, **_ignored):
    total = _reduce(OPS["add"], x, axis, float32, keepdims)
    count = x.elems_per_partition // total.elems_per_partition
    out = _new(total.shape, _result_dtype(dtype, x))
    isa.tensor_scalar(out, total, OPS["multiply"], 1.0 / count)
    return out


def var(x, axis, dtype=None, keepdims=False, **_ignored):
    centre = mean(x, axis, float32, keepdims=True)
    centred = _new(x.shape, float32)
    isa.tensor_scalar(centred, x, OPS["subtract"], centre)
    squared = apply_op(OPS["square"], centred)
    return mean(squared, axis, _result_dtype(dtype, x), keepdims)


def all(x, axis, dtype=None, keepdims=False, **_ignored):  # noqa: A001
    nonzero = apply_op(OPS["not_equal"], x, 0.0, dtype=float32)
    return _reduce(OPS["minimum"], nonzero, axis, dtype or x.dtype, keepdims)


def negative(x, dtype=None, **_ignored):
    return apply_op(OPS["multiply"], x, -1.0, dtype=dtype)


def softmax(x: NkiTensor, axis=-1, dtype=None, **_ignored) -> NkiTensor:
    """exp(x - max) / sum over the last free axis."""
    if axis not in (-1, x.ndim - 1):
        raise NkiUnsupportedError("nl.softmax over a non-last axis")
    parts = x.shape[0]
    row_max = _new((parts, 1), float32)
    isa.tensor_reduce(row_max, OPS["maximum"], x, axis=-1, negate=True)
    exps = _new(x.shape, float32)
    sums = _new((parts, 1), float32)
    isa.activation(exps, OPS["exp"], x, bias=row_max, reduce_op=OPS["add"], reduce_res=sums,
                   reduce_cmd=isa.reduce_cmd.reset_reduce)
    isa.reciprocal(sums, sums)
    out = _new(x.shape, _result_dtype(dtype, x))
    isa.tensor_scalar(out, exps, OPS["multiply"], sums)
    return out


def rms_norm(x: NkiTensor, w: NkiTensor, axis=-1, n=None, epsilon=1e-6, dtype=None, compute_dtype=None, **_ignored):
    """x * rsqrt(mean(x^2) + eps) * w over the last free axis; w is [1, F] or [P, F]."""
    parts, free = x.shape[0], x.elems_per_partition
    count = n or free
    squares = _new(x.shape, float32)
    sums = _new((parts, 1), float32)
    isa.activation_reduce(squares, OPS["square"], x, reduce_op=OPS["add"], reduce_res=sums)
    isa.tensor_scalar(sums, sums, OPS["multiply"], 1.0 / count, op1=OPS["add"], operand1=float(epsilon))
    isa.activation(sums, OPS["rsqrt"], sums)
    scaled = _new(x.shape, float32)
    isa.tensor_scalar(scaled, x, OPS["multiply"], sums)
    weights = broadcast_to(w, x.shape) if w.shape[0] != parts else w
    out = _new(x.shape, _result_dtype(dtype, x))
    isa.tensor_tensor(out, scaled, weights, OPS["multiply"])
    return out


def where(condition: NkiTensor, x, y, dtype=None, **_ignored) -> NkiTensor:
    """condition ? x : y, as a copy of y (or a memset) plus a predicated copy of x."""
    out = _new(condition.shape, _result_dtype(dtype, *[v for v in (x, y) if isinstance(v, NkiTensor)] or [condition]))
    if isinstance(y, NkiTensor):
        isa.tensor_copy(out, y)
    else:
        isa.memset(out, y)
    predicate = condition
    if condition.dtype.is_float:
        predicate = apply_op(OPS["not_equal"], condition, 0.0, dtype=as_dtype("uint8"))
    if isinstance(x, NkiTensor):
        source = x
    else:
        source = _new(condition.shape, out.dtype)
        isa.memset(source, x)
    isa.tensor_copy_predicated(out, source, predicate)
    return out


def expand_dims(x: NkiTensor, axis: int, **_ignored) -> NkiTensor:
    shape = list(x.shape)
    shape.insert(axis % (len(shape) + 1), 1)
    return x.reshape(tuple(shape))


def broadcast_to(x: NkiTensor, shape, **_ignored) -> NkiTensor:
    """Partition broadcast with nc_stream_shuffle (rows of 32), then free broadcast as a copy."""
    shape = tuple(shape)
    parts = shape[0]
    source = x
    if x.shape[0] == 1 and parts > 1:
        source = _new((parts,) + tuple(x.shape[1:]), x.dtype)
        for start in range(0, parts, 32):
            isa.nc_stream_shuffle(source[start:start + 32 if start + 32 <= parts else parts], x, [0] * 32)
    if source.shape == shape:
        return source
    pattern = [[source.partition_stride, parts]] + [
        [0 if size == 1 and want != 1 else stride, want]
        for size, stride, want in zip(source.shape[1:], source.strides[1:], shape[1:])]
    out = _new(shape, x.dtype)
    isa.tensor_copy(out, source.ap(pattern))
    return out


def _unsupported(api: str, detail: str):
    def function(*args, **kwargs):
        raise NkiUnsupportedError(f"nl.{api}", detail)
    function.__name__ = api
    return function


gather_flattened = _unsupported("gather_flattened", "not interpreted")
random_seed = _unsupported("random_seed", "random number generation is not interpreted")
dropout = _unsupported("dropout", "random number generation is not interpreted")
ceil = _unsupported("ceil", "no NKI instruction implements it")
floor = _unsupported("floor", "no NKI instruction implements it")
trunc = _unsupported("trunc", "no NKI instruction implements it")
