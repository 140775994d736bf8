"""Reductions, scans and batch-norm statistics (VectorE, GpSimd for the partition reduce).

Reductions run in fp32 over the trailing free dims and round once into dst. Scans walk the
free dim one column at a time, vectorised across partitions.
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site
from ..context import current
from .common import (RESETTING, accumulate, attrs_of, bits, check_buffers, check_op, check_same_elements,
                     lanes_of, record, reducer, resolve, scalar_operand, tile_f32, write, write_bits)
from .enums import reduce_cmd as ReduceCmd


def tensor_reduce(dst, op, data, axis, negate=False, keepdims=False, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    alu, ufunc = reducer("tensor_reduce", site, op)
    check_buffers("tensor_reduce", "vector", site, {"dst": dst, "data": data})
    ndim = len(data.shape)
    axes = sorted({a % ndim for a in ((axis,) if isinstance(axis, (int, np.integer)) else tuple(axis))})
    if 0 in axes or axes != list(range(ndim - len(axes), ndim)):
        fail("tensor_reduce", "axis must name trailing free dims (never the partition dim 0)",
             f"axis={axis} on a {ndim}-D tile", site)
    parts = data.shape[0]
    reduced = int(np.prod([data.shape[a] for a in axes]))
    kept = data.elems_per_partition // reduced
    if dst.shape[0] != parts or dst.elems_per_partition != kept:
        fail("tensor_reduce", "dst must hold one value per kept element", f"dst {dst.shape} for data {data.shape} "
             f"reduced over {tuple(axes)}", site)
    if alu.bitvec:
        def compute():
            write_bits(dst, ufunc.reduce(bits(data).reshape(parts, kept, reduced), axis=2))
    else:
        def compute():
            result = ufunc.reduce(tile_f32(data).reshape(parts, kept, reduced), axis=2, dtype=np.float32)
            write(dst, -result if negate else result)
    launch.execute(compute)
    record(launch, "tensor_reduce", "vector", site, {"dst": dst}, {"data": data},
           attrs_of(name, None, op=alu.name, axis=list(axes), negate=bool(negate)))


def tensor_partition_reduce(dst, op, data, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    alu, ufunc = reducer("tensor_partition_reduce", site, op)
    check_buffers("tensor_partition_reduce", "gpsimd", site, {"dst": dst, "data": data})
    if dst.shape[0] != 1 or dst.elems_per_partition != data.elems_per_partition:
        fail("tensor_partition_reduce", "dst must be one partition with data's free size",
             f"dst {dst.shape} for data {data.shape}", site)
    if alu.bitvec:
        def compute():
            write_bits(dst, ufunc.reduce(bits(data), axis=0, keepdims=True))
    else:
        def compute():
            write(dst, ufunc.reduce(tile_f32(data), axis=0, keepdims=True, dtype=np.float32))
    launch.execute(compute)
    record(launch, "tensor_partition_reduce", "gpsimd", site, {"dst": dst}, {"data": data}, attrs_of(name, None, op=alu.name))


def tensor_scalar_reduce(dst, data, op0, operand0, reduce_op, reduce_res, reverse0=False, name=None):
    launch, site = current(), kernel_site()
    dst, data, res = resolve(dst), resolve(data), resolve(reduce_res)
    first = check_op("tensor_scalar_reduce", site, op0, "op0", binary=True, unary=True)
    alu, ufunc = reducer("tensor_scalar_reduce", site, reduce_op, "reduce_op")
    check_buffers("tensor_scalar_reduce", "vector", site, {"dst": dst, "data": data, "reduce_res": res})
    check_same_elements("tensor_scalar_reduce", site, "dst", dst, {"data": data})
    reads = {"data": data}
    operand = None
    if first.binary is not None:
        operand = scalar_operand("tensor_scalar_reduce", site, operand0, data.shape[0], "operand0", reads)
    registers, lanes = launch.vector_accumulator, lanes_of(data)

    def compute():
        values = tile_f32(data)
        if operand is None:
            values = first.unary(values)
        else:
            value = operand()
            values = first.binary(value, values) if reverse0 else first.binary(values, value)
        write(dst, values)
        reduced = ufunc.reduce(values, axis=1, dtype=np.float32)
        write(res, accumulate(registers, lanes, ReduceCmd.reset_reduce, reduced, ufunc, alu.reduce_identity))
    launch.execute(compute)
    record(launch, "tensor_scalar_reduce", "vector", site, {"dst": dst, "reduce_res": res}, reads,
           attrs_of(name, None, op0=first.name, reduce_op=alu.name))


def tensor_tensor_scan(dst, data0, data1, initial, op0, op1, reverse0=False, reverse1=False, name=None):
    launch, site = current(), kernel_site()
    dst, data0, data1 = resolve(dst), resolve(data0), resolve(data1)
    first = check_op("tensor_tensor_scan", site, op0, "op0", binary=True)
    second = check_op("tensor_tensor_scan", site, op1, "op1", binary=True)
    check_buffers("tensor_tensor_scan", "vector", site, {"dst": dst, "data0": data0, "data1": data1})
    check_same_elements("tensor_tensor_scan", site, "dst", dst, {"data0": data0, "data1": data1})
    reads = {"data0": data0, "data1": data1}
    start = scalar_operand("tensor_tensor_scan", site, initial, data0.shape[0], "initial", reads)

    def compute():
        a, b = tile_f32(data0), tile_f32(data1)
        state = np.broadcast_to(start(), (a.shape[0], 1)).astype(np.float32)
        out = np.empty_like(a)
        for column in range(a.shape[1]):
            x = a[:, column:column + 1]
            step = first.binary(state, x) if reverse0 else first.binary(x, state)
            state = second.binary(b[:, column:column + 1], step) if reverse1 else \
                second.binary(step, b[:, column:column + 1])
            out[:, column:column + 1] = state
        write(dst, out)
    launch.execute(compute)
    record(launch, "tensor_tensor_scan", "vector", site, {"dst": dst}, reads,
           attrs_of(name, None, op0=first.name, op1=second.name))


def tensor_scalar_cumulative(dst, src, op0, op1, imm0, imm1=None, reduce_cmd=ReduceCmd.reset_reduce, name=None):
    launch, site = current(), kernel_site()
    dst, src = resolve(dst), resolve(src)
    first = check_op("tensor_scalar_cumulative", site, op0, "op0", binary=True)
    alu, ufunc = reducer("tensor_scalar_cumulative", site, op1, "op1")
    check_buffers("tensor_scalar_cumulative", "vector", site, {"dst": dst, "src": src})
    check_same_elements("tensor_scalar_cumulative", site, "dst", dst, {"src": src})
    if src.dtype.name in ("int32", "uint32") or dst.dtype.name in ("int32", "uint32"):
        fail("tensor_scalar_cumulative", "int32/uint32 inputs and outputs are not supported",
             f"src {src.dtype.name}, dst {dst.dtype.name}", site)
    reads = {"src": src}
    operand = scalar_operand("tensor_scalar_cumulative", site, imm0, src.shape[0], "imm0", reads)
    lanes = lanes_of(src)
    registers = launch.vector_accumulator
    start = alu.reduce_identity if imm1 is None else float(imm1)

    def compute():
        values = first.binary(tile_f32(src), operand())
        if reduce_cmd in RESETTING:
            registers[lanes] = start
        seeded = np.concatenate([registers[lanes].reshape(-1, 1), values], axis=1)
        scanned = ufunc.accumulate(seeded, axis=1, dtype=np.float32)[:, 1:]
        registers[lanes] = scanned[:, -1]
        write(dst, scanned)
    launch.execute(compute)
    record(launch, "tensor_scalar_cumulative", "vector", site, {"dst": dst}, reads,
           attrs_of(name, None, op0=first.name, op1=alu.name, reduce_cmd=ReduceCmd(reduce_cmd).name))


def bn_stats(dst, data, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    check_buffers("bn_stats", "vector", site, {"dst": dst, "data": data})
    limit = launch.target.bn_stats_fmax
    if data.elems_per_partition > limit:
        fail("bn_stats", f"data free size <= {limit} (nl.tile_size.bn_stats_fmax)",
             f"{data.elems_per_partition} elements per partition", site)
    if dst.shape[0] != data.shape[0] or dst.elems_per_partition != 6:
        fail("bn_stats", "dst must hold 6 values per partition", f"dst {dst.shape}", site)
    def compute():
        values = tile_f32(data)
        stats = []
        for half in (values[:, 0::2], values[:, 1::2]):
            count = half.shape[1]
            mean = half.mean(axis=1, dtype=np.float32) if count else np.zeros(half.shape[0], np.float32)
            m2 = ((half - mean[:, None]) ** 2).sum(axis=1, dtype=np.float32)
            stats += [np.full(half.shape[0], count, np.float32), mean, m2]
        write(dst, np.stack(stats, axis=1).astype(np.float32))
    launch.execute(compute)
    record(launch, "bn_stats", "vector", site, {"dst": dst}, {"data": data}, attrs_of(name, None))


def bn_aggr(dst, data, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    check_buffers("bn_aggr", "vector", site, {"dst": dst, "data": data})
    if data.elems_per_partition % 3 or dst.elems_per_partition != 2 or dst.shape[0] != data.shape[0]:
        fail("bn_aggr", "data holds (count, mean, m2) triples and dst 2 values per partition",
             f"data {data.shape}, dst {dst.shape}", site)
    def compute():
        groups = tile_f32(data).reshape(data.shape[0], -1, 3).astype(np.float64)
        counts, means, m2 = groups[..., 0], groups[..., 1], groups[..., 2]
        total = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (counts * means).sum(axis=1) / total
            var = (m2 + counts * (means - mean[:, None]) ** 2).sum(axis=1) / total
        write(dst, np.stack([mean, var], axis=1).astype(np.float32))
    launch.execute(compute)
    record(launch, "bn_aggr", "vector", site, {"dst": dst}, {"data": data}, attrs_of(name, None))
