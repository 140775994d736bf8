"""`nki.language` (nl): tensors, buffers, dtypes, tile sizes, loops, SPMD queries and operator names.

The NKI 0.3 convenience functions (nl.load, nl.matmul, nl.exp(x), ...) live in `language_ops` and
are re-exported here.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any

import numpy as np

from . import context, isa
from .checks import fail, usage
from .dtypes import (NkiDtype, as_dtype, bfloat16, bool_, float4_e2m1fn_x4, float8_e4m3,  # noqa: F401
                     float8_e4m3fn, float8_e4m3fn_x4, float8_e5m2, float8_e5m2_x4, float8_e8m0fnu, float16, float32,
                     int8, int16, int32, tfloat32, uint8, uint16, uint32)
from .memory import HBM, PRIVATE_HBM, PSUM, SBUF, SHARED_HBM, Allocation, Buffer, fallback_id, new_storage
from .ops import OPS
from .tensor import NkiTensor, row_major_tensor

sbuf, psum, hbm, private_hbm, shared_hbm = SBUF, PSUM, HBM, PRIVATE_HBM, SHARED_HBM
bool = bool_  # noqa: A001  (nl.bool is an accepted spelling)
dtype = NkiDtype
tensor = NkiTensor

globals().update(OPS)


class NKIObject:
    """Base class of kernel data holders, with the NKI front end's constructor semantics.

    The front end (KLR, leanprover/KLR KLR/NKI/Classes.lean `genInitStandard`) gives a class
    with fields `x: int` and `y: int = 1` the constructor `__init__(self, x=None, y=1)`: a field
    without a default defaults to None, for `@dataclass` classes as for plain ones. Giving every
    annotated field without a value a None default when the subclass is created makes Python's
    `@dataclass` (applied afterwards) generate that same constructor. Plain subclasses take the
    fields as keyword arguments (nki.language stub: `NKIObject.__init__(self, **kwargs)`).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in inspect.get_annotations(cls):
            if name not in cls.__dict__:
                setattr(cls, name, None)

    def __init__(self, **kwargs):
        for name, value in kwargs.items():
            setattr(self, name, value)


def _buffer_of(buffer) -> Buffer:
    if buffer is None:
        return SBUF
    if isinstance(buffer, Buffer):
        return buffer
    usage("nl.ndarray", f"buffer must be nl.sbuf, nl.psum, nl.hbm, nl.private_hbm or nl.shared_hbm; got {buffer!r}")


def ndarray(shape, dtype, buffer=None, name: str = "", address=None, **_ignored) -> NkiTensor:
    """A new uninitialised tensor (NaN / 4 filled, as the official simulator does)."""
    kind = _buffer_of(buffer)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    nki_dtype = as_dtype(dtype)
    launch = context.current()
    if kind is SHARED_HBM and launch.program_id and any(launch.program_id):
        return _shared_for_instance(launch, shape, nki_dtype)
    if kind.kind != "hbm":
        if len(shape) < 2:
            usage("nl.ndarray", f"on-chip tensors are at least 2-D (partition dim first); got shape {shape}")
        if shape[0] > launch.target.pmax:
            fail("nl.ndarray", f"partition dimension <= {launch.target.pmax}",
                 f"shape {shape} in {kind.name.upper()}")
    if any(s <= 0 for s in shape):
        usage("nl.ndarray", f"dimensions must be positive; got shape {shape}")
    count = int(np.prod(shape))
    alloc = Allocation(launch.memory.next_id() if context.active() else fallback_id(), kind,
                       new_storage(nki_dtype, count), nki_dtype, shape,
                       tuple(address) if address is not None else None, name)
    launch.memory.reserve(alloc)
    if context.active():
        launch.allocations[alloc.id] = alloc
    made = row_major_tensor(alloc, name)
    if kind is SHARED_HBM and context.active():
        launch.shared_tensors.append(made)
    return made


def _shared_for_instance(launch, shape, nki_dtype) -> NkiTensor:
    """SPMD: shared_hbm tensors are made once; later instances get the first instance's n-th one."""
    index = launch.shared_cursor
    launch.shared_cursor += 1
    if index >= len(launch.shared_tensors):
        usage("nl.ndarray", "program instances must allocate the same shared_hbm tensors in the same order")
    made = launch.shared_tensors[index]
    if made.shape != shape or made.dtype != nki_dtype:
        usage("nl.ndarray", f"shared_hbm tensor #{index} differs between instances: {made.shape} vs {shape}")
    return made


def zeros(shape, dtype, buffer=None, name: str = "", **kwargs) -> NkiTensor:
    return full(shape, 0, dtype, buffer=buffer, name=name, **kwargs)


def ones(shape, dtype, buffer=None, name: str = "", **kwargs) -> NkiTensor:
    return full(shape, 1, dtype, buffer=buffer, name=name, **kwargs)


def full(shape, fill_value, dtype, buffer=None, name: str = "", **kwargs) -> NkiTensor:
    """An initialised tensor; on chip this is an allocation plus a memset instruction."""
    made = ndarray(shape, dtype, buffer=buffer, name=name, **kwargs)
    if made.on_chip:
        isa.memset(made, fill_value)
    else:
        values = np.asarray(fill_value).astype(np.float32).astype(made.dtype.storage)
        _fill(made, values)
    return made


def _fill(made: NkiTensor, values: np.ndarray) -> None:
    """Initialise a tensor the kernel made; on the tape too, since a replay gives it fresh storage."""
    def compute():
        made.np()[...] = values
    context.current().execute(compute, instruction=False)


def zeros_like(a: NkiTensor, dtype=None, buffer=None, name: str = "") -> NkiTensor:
    return zeros(a.shape, dtype or a.dtype, buffer=buffer or a.buffer, name=name)


def empty_like(a: NkiTensor, dtype=None, buffer=None, name: str = "") -> NkiTensor:
    return ndarray(a.shape, dtype or a.dtype, buffer=buffer or a.buffer, name=name)


def shared_constant(constant, dtype=None, **_ignored) -> NkiTensor:
    """An HBM constant from an array (or a .npy path)."""
    values = np.load(constant) if isinstance(constant, (str, os.PathLike)) else np.asarray(constant)
    chosen = as_dtype(dtype) if dtype is not None else as_dtype(values.dtype)
    made = ndarray(values.shape, chosen, buffer=SHARED_HBM)
    _fill(made, values.astype(np.float32).astype(chosen.storage) if chosen.is_float else values.astype(chosen.storage))
    return made


def shared_identity_matrix(n: int, dtype=uint8, **_ignored) -> NkiTensor:
    """An n x n identity in SBUF, ready as a matmul operand (the compiler preloads it)."""
    made = ndarray((int(n), int(n)), dtype, buffer=SBUF)
    _fill(made, np.eye(int(n), dtype=np.float32).astype(made.dtype.storage))
    return made


_TILE_SIZES = {
    "pmax": lambda t: t.pmax,
    "psum_fmax": lambda t: t.psum_fmax,
    "psum_bank_fmax": lambda t: t.psum_fmax,
    "psum_bank_fmax_bytes": lambda t: t.psum_bank_bytes,
    "psum_num_banks": lambda t: t.psum_banks,
    "gemm_stationary_fmax": lambda t: t.gemm_stationary_fmax,
    "gemm_moving_fmax": lambda t: t.gemm_moving_fmax,
    "bn_stats_fmax": lambda t: t.bn_stats_fmax,
    "psum_min_align": lambda t: 4,
    "sbuf_min_align": lambda t: 1,
    "total_available_sbuf_size": lambda t: t.sbuf_bytes_per_partition,
    "sbuf_size_bytes": lambda t: t.sbuf_bytes_per_partition,
}


class _TileSize:
    """nl.tile_size: per-target tile limits, read from the running launch's target."""

    def __getattr__(self, name: str) -> int:
        getter = _TILE_SIZES.get(name)
        if getter is None:
            raise AttributeError(f"nl.tile_size has no attribute {name!r}")
        return getter(context.current().target)


tile_size = _TileSize()


def affine_range(start, stop=None, step=1, **_hints) -> range:
    return _range(start, stop, step)


def sequential_range(start, stop=None, step=1, **_hints) -> range:
    return _range(start, stop, step)


def static_range(start, stop=None, step=1, **_hints) -> range:
    return _range(start, stop, step)


def dynamic_range(start, stop=None, step=1, **_hints) -> range:
    return _range(start, stop, step)


def _range(start, stop, step) -> range:
    if stop is None:
        return range(int(start))
    return range(int(start), int(stop), int(step))


def par_dim(size):
    """Beta 1 partition-dim marker: the size itself (the NKI front end, KLR, defines it as identity).
    Only a leading partition dim is interpreted; block dims before it are not."""
    return size


def ds(start, size) -> slice:
    """nl.ds(start, size) is start:start+size."""
    return slice(int(start), int(start) + int(size))


def program_id(axis: int = 0) -> int:
    pid = context.current().program_id
    return pid[axis] if axis < len(pid) else 0


def num_programs(axes: int = 0) -> int:
    grid = context.current().grid
    if isinstance(axes, (tuple, list)):
        return int(np.prod([grid[a] if a < len(grid) else 1 for a in axes]))
    return grid[axes] if axes < len(grid) else 1


def program_ndim() -> int:
    return len(context.current().grid)


def device_print(prefix: str, x: Any, **_ignored) -> None:
    """Prints on every call, so a launch that prints is interpreted again rather than replayed."""
    context.current().block_replay("nl.device_print prints on every call")
    values = x.np() if isinstance(x, NkiTensor) else x
    print(prefix, values)


@contextlib.contextmanager
def no_reorder():
    """Scheduling hint only: execution is already in program order."""
    yield


def is_hbm(x) -> bool:
    return _buffer_kind(x) == "hbm"


def is_sbuf(x) -> bool:
    return _buffer_kind(x) == "sbuf"


def is_psum(x) -> bool:
    return _buffer_kind(x) == "psum"


def is_on_chip(x) -> bool:
    return _buffer_kind(x) in ("sbuf", "psum")


def _buffer_kind(x) -> str:
    return (x.buffer if isinstance(x, NkiTensor) else x).kind


from .language_ops import *  # noqa: E402,F401,F403  (the 0.3 convenience layer)
