"""DMA instructions: dma_copy (incl. indirect gather/scatter), dma_transpose, dma_compute.

A DMA moves elements in each side's row-major view order; only the element counts must match.
Different dtypes convert through fp32. Indirect views (`.ap(vector_offset=...)`) gather or
scatter whole rows; rows outside the tensor raise (oob_mode.error) or are skipped (oob_mode.skip).
The trace engine is always "dma"; an explicit engine= (the issuing queue) is kept in attrs.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import fail, kernel_site, usage
from ..context import current
from ..dtypes import convert, float32, to_f32
from ..ops import Op
from ..tensor import NkiTensor, gather_indices, index_tensor, indirect_region
from .common import FORBIDDEN_BUFFERS, attrs_of, region, resolve
from .enums import dge_mode as DgeMode
from .enums import engine as Engine
from .enums import oob_mode as OobMode


class _Side:
    """One side of a DMA: a static view, or a vector_offset view, whose flat element indices and in-bounds mask
    exist while the instruction works: made (and bounds-checked) when it is traced and again by each replay, which
    reads the index anew; only the region they cover and the count of rows inside are kept afterwards."""

    def __init__(self, instr, site, role, t: NkiTensor, oob):
        self.role = role
        self.flat = None
        self.valid = None
        self.indirect = t.indirect is not None and t.indirect.kind == "vector"
        if self.indirect:
            self.tensor = t
            self.instr, self.site, self.oob = instr, site, oob
            self.traced = False
            self.begin()
            self.traced = True
        else:
            self.tensor = resolve(t)
        self.count = math.prod(self.tensor.shape)

    def begin(self) -> None:
        """First step of the instruction's numeric work: the indices, unless the trace has just made them."""
        if not self.indirect:
            return
        if self.traced:
            self.traced = False
        else:
            self.flat, self.valid = gather_indices(self.tensor)
            if self.oob == OobMode.error and not self.valid.all():
                fail(self.instr, "indirect rows must lie inside the tensor (oob_mode=error)",
                     f"{self.role} row indices {np.asarray(_index_values(self.tensor)).tolist()}", self.site)

    def end(self) -> None:
        """Last step: keep what the trace needs (region, elements inside) and drop the indices."""
        if self.indirect:
            self.covered = indirect_region(self.tensor, self.flat, self.valid)
            self.inside = int(self.valid.sum())
            self.flat = self.valid = None

    def kind(self) -> str:
        return self.tensor.alloc.kind

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.indirect:
            return self.tensor.np().reshape(-1), None
        storage = self.tensor.alloc.raw.view(self.tensor.dtype.storage)
        safe = self.flat if self.inside_all() else np.where(self.valid, self.flat, 0)
        return storage[safe.reshape(-1)], self.valid.reshape(-1)

    def write(self, values: np.ndarray, valid: np.ndarray | None) -> None:
        if not self.indirect:
            view = self.tensor.np()
            if valid is None:
                view[...] = values.reshape(view.shape)
            else:
                merged = view.reshape(-1).copy()
                merged[valid] = values[valid]
                view[...] = merged.reshape(view.shape)
            return
        storage = self.tensor.alloc.raw.view(self.tensor.dtype.storage)
        if valid is None and self.inside_all():
            storage[self.flat.reshape(-1)] = values
            return
        keep = self.valid.reshape(-1) if valid is None else self.valid.reshape(-1) & valid
        storage[self.flat.reshape(-1)[keep]] = values[keep]

    def inside_all(self) -> bool:
        return bool(self.valid.all())

    def region(self):
        return self.covered if self.indirect else region(self.tensor)

    def operands(self):
        out = [(self.role, self.tensor)]
        index = index_tensor(self.tensor)
        if index is not None:
            out.append(("index", index))
        return out


def _index_values(t):
    return np.asarray(resolve(t.indirect.index).np()).reshape(-1)


def _check_sides(instr, site, sides, dge, dtype_pair):
    for side in sides:
        if side.kind() in FORBIDDEN_BUFFERS["dma"]:
            fail(instr, FORBIDDEN_BUFFERS["dma"][side.kind()], f"{side.role} in PSUM", site)
    gather = any(side.indirect for side in sides)
    if dge == DgeMode.hwdge:
        if gather:
            fail(instr, "hardware DGE has no vector_offset gather/scatter; use swdge",
                 "dge_mode=hwdge with a vector_offset access", site)
        if dtype_pair[0] != dtype_pair[1]:
            fail(instr, "dge_mode=hwdge moves raw bytes, so src and dst dtypes must match",
                 f"{dtype_pair[0].name} -> {dtype_pair[1].name}", site)


def _record(launch, op, site, dst_side, src_sides, attrs, moved, read_dst=False, moved_now=None):
    """Trace the DMA. Regions of indirect sides, and `moved_now()` (elements moved) when given, are what each
    replay re-makes from the index it read (Launch.trace_patches)."""
    operands, reads, patches = [], [], []
    for role, t in dst_side.operands():
        operands.append(t.operand(role))
        if role == "index":
            reads.append(region(t))
    for side in src_sides:
        for role, t in side.operands():
            operands.append(t.operand(role))
            if role == side.role and side.indirect:
                patches.append((4, len(reads), side.region))
            reads.append(side.region() if role == side.role else region(t))
    if read_dst:
        if dst_side.indirect:
            patches.append((4, len(reads), dst_side.region))
        reads.append(dst_side.region())
    if dst_side.indirect:
        patches.append((5, 0, dst_side.region))
    itemsize = dst_side.tensor.dtype.itemsize
    if moved_now is not None:
        patches.append((6, None, lambda: moved_now() * itemsize))
    launch.patch_trace(patches)
    launch.record(op, "dma", site, tuple(operands), tuple(reads), (dst_side.region(),), attrs, moved * itemsize, 0)


def dma_copy(dst, src, oob_mode=OobMode.error, dge_mode=DgeMode.unknown, engine=Engine.unknown, name=None,
             dst_rmw_op=None):
    launch, site = current(), kernel_site()
    target, source = _Side("dma_copy", site, "dst", dst, oob_mode), _Side("dma_copy", site, "src", src, oob_mode)
    _check_sides("dma_copy", site, (target, source), dge_mode, (source.tensor.dtype, target.tensor.dtype))
    if target.count != source.count:
        fail("dma_copy", "src and dst must hold the same number of elements",
             f"src {source.tensor.shape} ({source.count}), dst {target.tensor.shape} ({target.count})", site)
    dst_dtype = target.tensor.dtype
    if dst_rmw_op is not None and not (isinstance(dst_rmw_op, Op) and dst_rmw_op.name == "add"):
        fail("dma_copy", "dst_rmw_op supports only nl.add", f"dst_rmw_op={dst_rmw_op!r}", site)
    if dst_rmw_op is None and not source.indirect and not target.indirect:
        launch.execute(lambda: _copy_static(target.tensor, source.tensor))
        moved = target.count
    else:
        def compute():
            target.begin()
            source.begin()
            values, valid = source.read()
            if dst_rmw_op is not None:
                current_values, _ = target.read()
                summed = to_f32(current_values, dst_dtype) + to_f32(values, source.tensor.dtype)
                values = np.asarray(convert(summed, float32, dst_dtype))
            else:
                values = convert(values, source.tensor.dtype, dst_dtype)
            target.write(values, valid)
            target.end()
            source.end()
        launch.execute(compute)
        moved = _moved(source, target)
    _record(launch, "dma_copy", site, target, [source],
            attrs_of(name, engine, dge_mode=DgeMode(dge_mode).name, oob_mode=OobMode(oob_mode).name,
                     dst_rmw_op="add" if dst_rmw_op is not None else None), moved, read_dst=dst_rmw_op is not None,
            moved_now=(lambda: source.inside) if source.indirect else None)


def _moved(source: _Side, target: _Side) -> int:
    """Elements a copy moves: a gather skips the rows outside its tensor (oob_mode=skip)."""
    return source.inside if source.indirect else target.count


def _copy_static(dst: NkiTensor, src: NkiTensor) -> None:
    """dst <- src element by element in each view's row-major order (as _Side.read/write do), in one pass
    when one view can take the other's shape without a copy."""
    values = convert(src.np(), src.dtype, dst.dtype)
    target = dst.np()
    if values.shape != target.shape:
        try:
            target = np.reshape(target, values.shape, copy=False)
        except ValueError:
            values = values.reshape(target.shape)
    target[...] = values


_TRANSPOSE_AXES = {2: [(1, 0)], 3: [(2, 1, 0)], 4: [(3, 1, 2, 0)]}


def dma_transpose(dst, src, axes=None, dge_mode=DgeMode.unknown, oob_mode=OobMode.error, name=None):
    launch, site = current(), kernel_site()
    target, source = _Side("dma_transpose", site, "dst", dst, oob_mode), _Side("dma_transpose", site, "src", src, oob_mode)
    _check_sides("dma_transpose", site, (target, source), DgeMode.unknown, (source.tensor.dtype, target.tensor.dtype))
    src_t, dst_t = source.tensor, target.tensor
    if dst_t.alloc.kind != "sbuf":
        fail("dma_transpose", "dma_transpose writes to SBUF", f"dst in {dst_t.alloc.kind.upper()}", site)
    if src_t.dtype != dst_t.dtype:
        fail("dma_transpose", "src and dst need the same dtype", f"{src_t.dtype.name} -> {dst_t.dtype.name}", site)
    if src_t.dtype.itemsize not in (2, 4):
        fail("dma_transpose", "dma_transpose moves 2- or 4-byte elements", f"dtype {src_t.dtype.name}", site)
    ndim = len(src_t.shape)
    allowed = _TRANSPOSE_AXES.get(ndim, [])
    chosen = tuple(axes) if axes is not None else (allowed[0] if allowed else None)
    if chosen not in allowed:
        fail("dma_transpose", "supported permutations are (1,0), (2,1,0) and (3,1,2,0)",
             f"axes={chosen} for a {ndim}-D src", site)
    if target.count != source.count:
        fail("dma_transpose", "src and dst must hold the same number of elements",
             f"src {src_t.shape}, dst {dst_t.shape}", site)
    def compute():
        target.begin()
        source.begin()
        values, valid = source.read()
        moved_values = np.transpose(values.reshape(src_t.shape), chosen).reshape(-1)
        moved_valid = None if valid is None else np.transpose(valid.reshape(src_t.shape), chosen).reshape(-1)
        target.write(moved_values, moved_valid)
        target.end()
        source.end()
    launch.execute(compute)
    _record(launch, "dma_transpose", site, target, [source],
            attrs_of(name, None, axes=list(chosen), dge_mode=DgeMode(dge_mode).name), target.count)


def dma_compute(dst, srcs, *args, reduce_op=None, scales=None, unique_indices=True, name=None):
    """dst = sum(scale_i * src_i) in fp32. Positional tails: 0.3 (reduce_op, scales) or 0.2 (scales, reduce_op)."""
    launch, site = current(), kernel_site()
    for value in args:
        if isinstance(value, Op):
            reduce_op = value
        else:
            scales = value
    sources = list(srcs)
    if not 1 <= len(sources) <= 16:
        fail("dma_compute", "1 to 16 sources", f"{len(sources)} sources", site)
    if not (isinstance(reduce_op, Op) and reduce_op.name == "add"):
        fail("dma_compute", "reduce_op must be nl.add", f"reduce_op={reduce_op!r}", site)
    scales = [1.0] * len(sources) if scales is None else [float(s) for s in scales]
    if len(scales) != len(sources) or any(s != 1.0 for s in scales):
        fail("dma_compute", "scales must be 1.0, one per source", f"scales={scales}", site)
    target = _Side("dma_compute", site, "dst", dst, OobMode.error)
    sides = [_Side("dma_compute", site, f"srcs[{i}]", s, OobMode.error) for i, s in enumerate(sources)]
    _check_sides("dma_compute", site, [target] + sides, DgeMode.unknown, (target.tensor.dtype, target.tensor.dtype))
    for side in sides:
        if side.count != target.count:
            usage("dma_compute", f"{side.role} has {side.count} elements, dst {target.count}", site)

    def compute():
        for side in [target] + sides:
            side.begin()
        total = np.zeros(target.count, dtype=np.float32)
        for side in sides:
            values, _ = side.read()
            total += to_f32(values, side.tensor.dtype)
        target.write(convert(total, float32, target.tensor.dtype), None)
        for side in [target] + sides:
            side.end()
    launch.execute(compute)
    _record(launch, "dma_compute", site, target, sides, attrs_of(name, None, reduce_op="add",
                                                                 sources=len(sides)), target.count)
