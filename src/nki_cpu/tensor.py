"""NkiTensor: a view (shape, element strides, offset, dtype) onto one Allocation.

Views never copy. Indexing follows the NKI rules (nki-api.md §7): NumPy basic indexing; on
chip an integer on the partition dim keeps a size-1 dim and integers on free dims drop them
unless the result would fall below 2-D; in HBM integers drop dims. Out-of-range indices are
errors rather than NumPy-style clamping, because on hardware they read other tensors' memory.
`.ap()` builds a view from a raw access pattern over the underlying storage, optionally with a
data-dependent `scalar_offset` or `vector_offset` (indirect DMA), resolved when an instruction
executes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import context as _context
from .checks import fail, is_interpreter_file, kernel_site, usage
from .dtypes import NkiDtype, as_dtype
from .errors import NkiIndexError, NkiUnsupportedError
from .memory import Allocation, Buffer
from .trace import Region, RegionFields


@dataclass(frozen=True)
class Indirect:
    """A data-dependent offset on one dim of an access pattern, resolved at execution time.

    kind "scalar": offset += value * row_stride, value from a 1x1 SBUF tensor or register.
    kind "vector": row w of pattern dim `dim` starts at index[w] * row_stride (DMA gather/scatter).
    """

    kind: str
    index: object
    dim: int
    row_stride: int


class Layout(NamedTuple):
    """Where a static view sits in its allocation, in bytes and partitions (a NamedTuple: made for every
    view an instruction touches, and a frozen dataclass costs several times more to build)."""

    partitions: tuple[int, int]
    byte_range: tuple[int, int]
    free_elems: int
    inner_stride_bytes: int
    contiguous: bool
    free_dims: int          # free dims of the access pattern after merging the mergeable ones
    run_elems: int          # elements in one contiguous run of memory (innermost dims merged while dense)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


class NkiTensor:
    """A tensor or a view of one, in HBM, SBUF or PSUM."""

    __slots__ = ("alloc", "dtype", "shape", "strides", "offset", "indirect", "name", "_np", "_base", "_layout",
                 "_operands", "_region", "_tile", "via", "__weakref__")

    def __init__(self, alloc: Allocation, dtype: NkiDtype, shape: tuple, strides: tuple, offset: int,
                 indirect: Indirect | None = None, name: str = ""):
        self.alloc = alloc
        self.dtype = dtype
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.indirect = indirect
        self.name = name or alloc.name
        self._np = None
        self._base = None        # the allocation's storage `_np` views (a replay gives allocations fresh storage)
        self._layout = None
        self._operands = None
        self._region = None
        self._tile = None
        self.via = None          # the index tensor / register a scalar_offset view was resolved through

    # ----- properties kernels read -------------------------------------------------------
    @property
    def buffer(self) -> Buffer:
        return self.alloc.buffer

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def on_chip(self) -> bool:
        return self.alloc.kind != "hbm"

    @property
    def partition_stride(self) -> int:
        """Elements of this view's dtype per partition of the allocation."""
        return self.alloc.bytes_per_partition // self.dtype.itemsize

    @property
    def elems_per_partition(self) -> int:
        """On chip: elements per partition; HBM: all elements."""
        layout = self._layout
        return layout.free_elems if layout is not None else self.layout().free_elems

    def __repr__(self) -> str:
        return f"NkiTensor({self.name or 'tensor'}, shape={self.shape}, dtype={self.dtype.name}, buffer={self.buffer.name})"

    # ----- views -----------------------------------------------------------------------------
    def __getitem__(self, key) -> "NkiTensor":
        if self.indirect is not None:
            raise NkiUnsupportedError("indexing an indirect (.ap with scalar/vector offset) view")
        if type(key) is not tuple:
            key = (key,)
        key = _expand_ellipsis(key, len(self.shape))
        shape, strides, offset = [], [], self.offset
        dropped_last = None
        on_chip = self.alloc.kind != "hbm"
        for dim, item in enumerate(key):
            size, stride = self.shape[dim], self.strides[dim]
            if type(item) is slice:
                start, stop = item.start, item.stop
                if item.step is None and type(start) is int and type(stop) is int and 0 <= start < stop <= size:
                    count, step = stop - start, 1                # the common a:b slice, checked inline
                else:
                    start, count, step = _slice_bounds(item, size, dim)
                offset += start * stride
                shape.append(count)
                strides.append(stride * step)
            elif isinstance(item, (int, np.integer)):
                index = int(item)
                if index < -size or index >= size:
                    raise NkiIndexError(f"index {index} out of range for dim {dim} of size {size} "
                                        f"(kernel {_where()})")
                index %= size
                offset += index * stride
                if on_chip and dim == 0:
                    shape.append(1)
                    strides.append(stride)
                else:
                    dropped_last = stride
            elif isinstance(item, NkiTensor):
                raise NkiUnsupportedError("indexing with a tensor", "use .ap(scalar_offset=...) instead")
            else:
                raise NkiIndexError(f"unsupported index {item!r} (kernel {_where()})")
        for dim in range(len(key), len(self.shape)):
            shape.append(self.shape[dim])
            strides.append(self.strides[dim])
        if on_chip and len(shape) < 2:
            shape.append(1)
            strides.append(dropped_last if dropped_last is not None else 1)
        return NkiTensor(self.alloc, self.dtype, tuple(shape), tuple(strides), offset, None, self.name)

    def reshape(self, *shape) -> "NkiTensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(s) for s in shape)
        total = _product(self.shape)
        if -1 in shape:
            known = _product(s for s in shape if s != -1)
            shape = tuple(total // known if s == -1 else s for s in shape)
        if _product(shape) != total:
            usage("reshape", f"cannot reshape {self.shape} into {shape}")
        if self.indirect is not None:
            raise NkiUnsupportedError("reshape of an indirect view")
        if self.on_chip:
            if shape[0] != self.shape[0]:
                usage("reshape", f"on-chip reshape must keep the partition dim {self.shape[0]}; got {shape}")
            if not self._dense(1):
                usage("reshape", f"free dims of {self.shape} with strides {self.strides} are not contiguous")
            strides = (self.strides[0],) + _row_major(shape[1:])
        else:
            if not self._dense(0):
                usage("reshape", f"view {self.shape} with strides {self.strides} is not contiguous")
            strides = _row_major(shape)
        return NkiTensor(self.alloc, self.dtype, shape, strides, self.offset, None, self.name)

    def view(self, dtype) -> "NkiTensor":
        """Reinterpret the bits as another dtype; the last dim scales by the size ratio."""
        new = as_dtype(dtype)
        old_size, new_size = self.dtype.itemsize, new.itemsize
        if self.strides[-1] != 1 and self.shape[-1] != 1:
            usage("view", f"the last dim must be contiguous to reinterpret as {new.name}")
        last_bytes = self.shape[-1] * old_size
        if last_bytes % new_size or (self.offset * old_size) % new_size:
            usage("view", f"last dim of {self.shape} {self.dtype.name} is not a whole number of {new.name}")
        strides = []
        for stride in self.strides[:-1]:
            if (stride * old_size) % new_size:
                usage("view", f"stride {stride} is not a whole number of {new.name} elements")
            strides.append(stride * old_size // new_size)
        shape = self.shape[:-1] + (last_bytes // new_size,)
        return NkiTensor(self.alloc, new, shape, tuple(strides) + (1,), self.offset * old_size // new_size,
                         None, self.name)

    def ap(self, pattern, offset=None, scalar_offset=None, vector_offset=None, indirect_dim=0, dtype=None):
        """Access-pattern view over the underlying storage (steps and offsets in elements)."""
        new = as_dtype(dtype) if dtype is not None else self.dtype
        pairs = [(int(step), int(num)) for step, num in pattern]
        if offset is None:
            start = self.offset * self.dtype.itemsize // new.itemsize
        else:
            start = int(offset)
        strides, shape = (tuple(column) for column in zip(*pairs)) if pairs else ((), ())
        if self.on_chip and pairs and pairs[0][1] > 1:
            pstride = self.alloc.bytes_per_partition // new.itemsize
            if pairs[0][0] != pstride:
                usage("ap", f"the partition step of an on-chip pattern must be {pstride} (elements per "
                            f"partition); got {pairs[0][0]}")
        indirect = None
        if scalar_offset is not None and vector_offset is not None:
            usage("ap", "scalar_offset and vector_offset cannot be combined")
        row_stride = _product(self.shape[int(indirect_dim) + 1:]) * self.dtype.itemsize // new.itemsize
        if vector_offset is not None:
            indirect = Indirect("vector", vector_offset, int(indirect_dim), row_stride)
        elif scalar_offset is not None:
            if isinstance(scalar_offset, (int, np.integer)):
                start += int(scalar_offset) * row_stride
            else:
                indirect = Indirect("scalar", scalar_offset, int(indirect_dim), row_stride)
        view = NkiTensor(self.alloc, new, shape, strides, start, indirect, self.name)
        if indirect is None:
            view.layout()
        return view

    def get_pattern(self) -> list[list[int]]:
        return [[stride, size] for stride, size in zip(self.strides, self.shape)]

    # ----- interpreter side ------------------------------------------------------------------
    def _dense(self, first_dim: int) -> bool:
        expected = 1
        for size, stride in zip(reversed(self.shape[first_dim:]), reversed(self.strides[first_dim:])):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    def layout(self) -> Layout:
        """Partition and byte span of this static view; raises if it leaves its allocation."""
        layout = self._layout
        if layout is not None:
            return layout
        itemsize = self.dtype.itemsize
        if self.alloc.kind != "hbm":
            pstride = self.alloc.bytes_per_partition // itemsize
            first = self.offset // pstride
            lo = hi = self.offset - first * pstride
            dims = list(zip(self.shape[1:], self.strides[1:]))
            partitions = (first, first + self.shape[0])
            limit = pstride
            if first < 0 or partitions[1] > self.alloc.partitions:
                raise NkiIndexError(f"partitions {partitions} outside the {self.alloc.partitions} partitions "
                                    f"of {self.name or 'tensor'} {self.alloc.shape} (kernel {_where()})")
        else:
            lo = hi = self.offset
            dims = list(zip(self.shape, self.strides))
            partitions = (0, 1)
            limit = self.alloc.raw.nbytes // itemsize
        free_elems, inner, free_dims, outer_stride = 1, itemsize, 0, None
        for size, stride in dims:
            free_elems *= size
            if size > 1:
                inner = abs(stride) * itemsize
                if outer_stride is None or outer_stride != stride * size:   # else it merges with the outer dim
                    free_dims += 1
                outer_stride = stride
                if stride > 0:
                    hi += (size - 1) * stride
                else:
                    lo += (size - 1) * stride
        if (lo < 0 or hi >= limit) and self.indirect is None:
            raise NkiIndexError(f"view {self.shape} at offset {self.offset} with strides {self.strides} leaves "
                                f"{self.name or 'tensor'} {self.alloc.shape} {self.alloc.dtype.name} "
                                f"(kernel {_where()})")
        if free_elems == 0:
            raise NkiIndexError(f"empty view {self.shape} of {self.name or 'tensor'} (kernel {_where()})")
        layout = Layout(partitions, (lo * itemsize, (hi + 1) * itemsize), free_elems, inner,
                        hi - lo + 1 == free_elems, free_dims, _run_elems(dims, self.indirect is not None))
        self._layout = layout
        return layout

    def np(self) -> np.ndarray:
        """NumPy view (storage dtype, this tensor's shape) sharing the allocation's memory."""
        if _taping and not is_interpreter_file(sys._getframe(1).f_code.co_filename):
            _block_replay("the kernel read tensor values (.np())")
        view = self._np
        raw = self.alloc.raw
        if view is None or self._base is not raw:
            if self.indirect is not None:
                raise NkiUnsupportedError("direct access to an indirect view")
            if self._layout is None:
                self.layout()
            itemsize = self.dtype.itemsize
            view = np.ndarray(self.shape, self.dtype.storage, raw, self.offset * itemsize,
                              [s * itemsize for s in self.strides])
            self._np, self._base = view, raw
            if self._tile is not False:
                self._tile = None
        return view

    def tile_view(self) -> np.ndarray | None:
        """[P, F] view (HBM: [1, N]) sharing memory, or None when the free dims do not merge."""
        flat = self._tile
        if flat is None or (flat is not False and self._base is not self.alloc.raw):
            shape = (self.shape[0], -1) if self.alloc.kind != "hbm" else (1, -1)
            if (self._layout or self.layout()).free_dims > 1:
                flat = False                 # free dims that do not merge: NumPy would copy
            else:
                try:
                    flat = self.np().reshape(shape, copy=False)
                except ValueError:
                    flat = False             # remembered: this view needs a copy
            self._tile = flat
        return None if flat is False else flat

    def move_to(self, offset: int, site: tuple[str, int]) -> None:
        """Re-place a resolved scalar_offset view (replays resolve it again from the data) and check its bounds."""
        self.offset = offset
        self._np = self._base = self._layout = self._region = self._tile = None
        try:
            self.layout()
        except NkiIndexError:
            fail("indirect access", "scalar_offset must stay inside the tensor",
                 f"offset {offset} for view {self.shape} of {self.alloc.shape}", site)

    def region(self) -> RegionFields:
        """The trace Region's fields (the Trace makes the Region when it is read)."""
        found = self._region
        if found is None:
            layout = self._layout or self.layout()
            found = self._region = RegionFields(self.alloc.kind, self.alloc.id, layout.partitions, layout.byte_range)
        return found

    def operand(self, role: str) -> tuple:
        """The trace Operand's fields, as a plain tuple (the Trace makes the Operand when it is read)."""
        cache = self._operands
        if cache is None:
            cache = self._operands = {}
        found = cache.get(role)
        if found is None:
            layout = self._layout or self.layout()
            kind = self.alloc.kind
            partitions = self.shape[0] if kind != "hbm" else 1
            found = cache[role] = (role, self.shape, self.dtype.name, kind, partitions, layout.free_elems,
                                   layout.inner_stride_bytes, layout.contiguous,
                                   partitions * layout.free_elems * self.dtype.storage.itemsize,
                                   self.indirect is not None or self.via is not None, layout.run_elems)
        return found


def _run_elems(dims: list[tuple[int, int]], indirect: bool) -> int:
    """Elements of one contiguous piece of memory: the innermost dims merged while each one's stride
    equals the run so far (a DMA descriptor covers one such piece). An indirect view's rows are
    gathered, so its run never spans more than the innermost dim."""
    run = 1
    for size, stride in reversed(dims):
        if size == 1:
            continue
        if stride != run:
            break
        run *= size
        if indirect:
            break
    return run


_taping = 0        # launches that are taping right now (nki_cpu.replay); the .np() guard costs nothing otherwise


def set_taping(delta: int) -> None:
    global _taping
    _taping += delta


def _block_replay(reason: str) -> None:
    launch = _context.active()
    if launch is not None:
        launch.block_replay(reason)


def _where() -> str:
    file, line = kernel_site()
    return f"{file}:{line}"


def _row_major(shape: tuple) -> tuple:
    strides, running = [], 1
    for size in reversed(shape):
        strides.append(running)
        running *= size
    return tuple(reversed(strides))


def _expand_ellipsis(key: tuple, ndim: int) -> tuple:
    if Ellipsis in key:
        at = key.index(Ellipsis)
        fill = ndim - (len(key) - 1)
        key = key[:at] + (slice(None),) * fill + key[at + 1:]
    if len(key) > ndim:
        raise NkiIndexError(f"too many indices ({len(key)}) for a {ndim}-D tensor (kernel {_where()})")
    return key


def _slice_bounds(item: slice, size: int, dim: int) -> tuple[int, int, int]:
    """(start, count, step) of a slice, rejecting bounds outside the dim instead of clamping."""
    start, stop, step = item.start, item.stop, item.step
    for bound in (start, stop):
        if bound is not None and not (-size <= bound <= size):
            raise NkiIndexError(f"slice {start}:{stop} out of range for dim {dim} of size {size} "
                                f"(kernel {_where()})")
    start, stop, step = item.indices(size)
    count = len(range(start, stop, step))
    if count == 0:
        raise NkiIndexError(f"empty slice {item.start}:{item.stop} on dim {dim} of size {size} (kernel {_where()})")
    return start, count, step


def row_major_tensor(alloc: Allocation, name: str = "") -> NkiTensor:
    """The whole-allocation tensor, row-major (partition-major on chip)."""
    return NkiTensor(alloc, alloc.dtype, alloc.shape, _row_major(alloc.shape), 0, None, name or alloc.name)


def register_value(index) -> int:
    """Value of a scalar offset: a VirtualRegister or a 1x1 tensor's first element (read into Python, so a launch
    that does this cannot be replayed)."""
    if isinstance(index, NkiTensor):
        _block_replay("a register was loaded from tensor data")
        return _first_value(index)
    value = getattr(index, "value", index)
    return int(value)


def _first_value(t: NkiTensor) -> int:
    return int(np.asarray(concrete(t).np()).reshape(-1)[0])


def concrete(t: NkiTensor) -> NkiTensor:
    """The static view an instruction touches: scalar offsets resolved, vector offsets refused.

    A scalar offset read from an HBM view's index tensor is resolved on the tape as well, so a replay reads the
    index again, moves the view and checks its bounds; the instruction stream stays the same."""
    indirect = t.indirect
    if indirect is None:
        return t
    if indirect.kind == "vector":
        raise NkiUnsupportedError("vector_offset outside DMA instructions")
    index = indirect.index
    resolved = NkiTensor(t.alloc, t.dtype, t.shape, t.strides, t.offset, None, t.name)
    resolved.via = index
    if not isinstance(index, NkiTensor):
        resolved.move_to(t.offset + register_value(index) * indirect.row_stride, None)
        return resolved
    site = kernel_site()
    launch = _context.active()
    if launch is None or launch.tape is None or t.alloc.kind != "hbm":
        if t.alloc.kind != "hbm":
            _block_replay("an on-chip view has a data-dependent scalar_offset")
        resolved.move_to(t.offset + _first_value(index) * indirect.row_stride, site)
        return resolved
    launch.execute(lambda: resolved.move_to(t.offset + _first_value(index) * indirect.row_stride, site),
                   instruction=False)
    launch.dynamic_views.append(resolved)
    return resolved


def index_tensor(t: NkiTensor) -> NkiTensor | None:
    """The SBUF index tensor behind an indirect view (None for registers and static views)."""
    index = t.indirect.index if t.indirect is not None else t.via
    return concrete(index) if isinstance(index, NkiTensor) else None


def gather_indices(t: NkiTensor) -> tuple[np.ndarray, np.ndarray]:
    """Flat element indices (shape t.shape) of a vector_offset view and the in-bounds mask per element."""
    indirect = t.indirect
    rows = np.asarray(concrete(indirect.index).np(), dtype=np.int64).reshape(-1)
    count = t.shape[indirect.dim]
    if rows.size < count:
        usage("indirect access", f"vector_offset has {rows.size} indices for {count} rows")
    flat = np.int64(t.offset)
    for dim, (size, stride) in enumerate(zip(t.shape, t.strides)):   # broadcast: only the last add is full size
        shape = [1] * len(t.shape)
        shape[dim] = size
        step = indirect.row_stride if dim == indirect.dim else stride
        values = rows[:count] if dim == indirect.dim else np.arange(size)
        flat = flat + (values * step).reshape(shape)
    limit = t.alloc.raw.nbytes // t.dtype.itemsize
    valid = (flat >= 0) & (flat < limit)
    row_ok = (rows[:count] >= 0).reshape([count if d == indirect.dim else 1 for d in range(len(t.shape))])
    valid &= row_ok
    return flat, valid


def indirect_region(t: NkiTensor, flat: np.ndarray, valid: np.ndarray) -> Region:
    itemsize = t.dtype.itemsize
    hits = flat[valid]
    if hits.size == 0:
        return Region(t.alloc.kind, t.alloc.id, (0, 1), (0, 0))
    return Region(t.alloc.kind, t.alloc.id, (0, 1), (int(hits.min()) * itemsize, (int(hits.max()) + 1) * itemsize))
