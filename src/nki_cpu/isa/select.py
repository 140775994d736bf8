"""Index patterns and selects: iota, affine_select (GpSimd), range_select, select_reduce (VectorE).

Pattern instructions evaluate `offset + p * channel_multiplier + sum(index_d * step_d)` over the
partitions and the pattern's free index space, as int32 arithmetic.
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site, usage
from ..context import current
from ..ops import OPS
from ..tensor import NkiTensor
from .common import (accumulate, attrs_of, check_buffers, check_op, check_same_elements, lanes_of, record, reducer,
                     resolve, scalar_operand, tile_f32, write)
from .enums import reduce_cmd as ReduceCmd

FP32_MIN = float(np.finfo(np.float32).min)


def _pattern_values(instr, site, dst: NkiTensor, pattern, offset, channel_multiplier) -> np.ndarray:
    """[P, F] int64 values of an affine pattern over dst's partitions and free elements."""
    pairs = [(int(step), int(num)) for step, num in pattern]
    if len(pairs) > 4:
        fail(instr, "a pattern has at most 4 free dims", f"{len(pairs)} dims", site)
    count = int(np.prod([num for _, num in pairs])) if pairs else 1
    if count != dst.elems_per_partition:
        fail(instr, "the pattern must cover dst's elements per partition",
             f"pattern {pairs} covers {count}, dst {dst.shape} has {dst.elems_per_partition}", site)
    free = np.zeros(1, dtype=np.int64)
    for step, num in pairs:
        free = (free[:, None] + np.arange(num, dtype=np.int64) * step).reshape(-1)
    parts = np.arange(dst.shape[0], dtype=np.int64)[:, None] * int(channel_multiplier)
    return int(offset) + parts + free[None, :]


def iota(dst, pattern, offset=0, channel_multiplier=0, name=None):
    launch, site = current(), kernel_site()
    dst = resolve(dst)
    check_buffers("iota", "gpsimd", site, {"dst": dst})
    values = _pattern_values("iota", site, dst, pattern, offset, channel_multiplier)
    values = values.astype(np.int32).astype(np.float32) if dst.dtype.is_float else values.astype(np.int32)
    launch.execute(lambda: write(dst, values))
    record(launch, "iota", "gpsimd", site, {"dst": dst}, {}, attrs_of(name, None, offset=int(offset),
                                                                          channel_multiplier=int(channel_multiplier)))


def affine_select(dst, pattern, *args, **kwargs):
    """0.3 order (channel_multiplier, on_true_tile, on_false_value, cmp_op, offset) or the 0.2
    order (offset, channel_multiplier, on_true_tile, on_false_value, cmp_op), told apart by where
    the tile sits among the positional arguments."""
    launch, site = current(), kernel_site()
    names = ["channel_multiplier", "on_true_tile", "on_false_value", "cmp_op", "offset"]
    if len(args) >= 3 and not isinstance(args[1], NkiTensor) and isinstance(args[2], NkiTensor):
        names = ["offset", "channel_multiplier", "on_true_tile", "on_false_value", "cmp_op"]
    bound = dict(zip(names, args))
    for key, value in kwargs.items():
        if key in bound:
            usage("affine_select", f"{key} given twice", site)
        bound[key] = value
    unknown = set(bound) - set(names) - {"name"}
    if unknown:
        usage("affine_select", f"unexpected arguments {sorted(unknown)}", site)
    dst = resolve(dst)
    on_true = resolve(bound["on_true_tile"])
    cmp = check_op("affine_select", site, bound.get("cmp_op", OPS["equal"]), "cmp_op", binary=True)
    check_buffers("affine_select", "gpsimd", site, {"dst": dst, "on_true_tile": on_true})
    check_same_elements("affine_select", site, "dst", dst, {"on_true_tile": on_true})
    offset = bound.get("offset", 0)
    values = _pattern_values("affine_select", site, dst, pattern, offset, bound["channel_multiplier"])
    mask = cmp.binary(values.astype(np.float32), np.float32(0.0)) != 0
    on_false = np.float32(bound["on_false_value"])
    launch.execute(lambda: write(dst, np.where(mask, tile_f32(on_true), on_false)))
    record(launch, "affine_select", "gpsimd", site, {"dst": dst}, {"on_true_tile": on_true},
           attrs_of(bound.get("name"), None, cmp_op=cmp.name, offset=int(offset)))


def range_select(dst, on_true_tile, comp_op0, comp_op1, bound0, bound1, reduce_cmd=ReduceCmd.reset_reduce,
                 reduce_res=None, reduce_op=OPS["maximum"], range_start=0, on_false_value=FP32_MIN, name=None):
    launch, site = current(), kernel_site()
    if not launch.target.has_range_select:
        fail("range_select", "range_select needs NeuronCore-v3 or later", f"target {launch.target.name}", site)
    dst, on_true = resolve(dst), resolve(on_true_tile)
    first = check_op("range_select", site, comp_op0, "comp_op0", binary=True)
    second = check_op("range_select", site, comp_op1, "comp_op1", binary=True)
    check_buffers("range_select", "vector", site, {"dst": dst, "on_true_tile": on_true})
    check_same_elements("range_select", site, "dst", dst, {"on_true_tile": on_true})
    if float(on_false_value) != FP32_MIN:
        fail("range_select", "on_false_value must be the fp32 minimum (-3.4028235e+38)",
             f"on_false_value={on_false_value!r}", site)
    reads = {"on_true_tile": on_true}
    parts = on_true.shape[0]
    low = scalar_operand("range_select", site, bound0, parts, "bound0", reads)
    high = scalar_operand("range_select", site, bound1, parts, "bound1", reads)
    index = (np.float32(range_start) + np.arange(on_true.elems_per_partition, dtype=np.float32))[None, :]
    writes = {"dst": dst}
    fold = _reduce_into(launch, "range_select", site, reduce_op, reduce_cmd, reduce_res, on_true, writes)

    def compute():
        mask = (first.binary(index, low()) != 0) & (second.binary(index, high()) != 0)
        out = np.where(mask, tile_f32(on_true), np.float32(on_false_value)).astype(np.float32)
        write(dst, out)
        fold(out)
    launch.execute(compute)
    record(launch, "range_select", "vector", site, writes, reads,
           attrs_of(name, None, comp_op0=first.name, comp_op1=second.name, reduce_cmd=ReduceCmd(reduce_cmd).name))


def select_reduce(dst, predicate, on_true, on_false, reduce_res=None, reduce_cmd=ReduceCmd.idle,
                  reduce_op=OPS["maximum"], reverse_pred=False, name=None):
    launch, site = current(), kernel_site()
    dst, pred, true_tile = resolve(dst), resolve(predicate), resolve(on_true)
    check_buffers("select_reduce", "vector", site, {"dst": dst, "predicate": pred, "on_true": true_tile})
    check_same_elements("select_reduce", site, "dst", dst, {"predicate": pred, "on_true": true_tile})
    reads = {"predicate": pred, "on_true": true_tile}
    false_values = scalar_operand("select_reduce", site, on_false, true_tile.shape[0], "on_false", reads)
    writes = {"dst": dst}
    fold = _reduce_into(launch, "select_reduce", site, reduce_op, reduce_cmd, reduce_res, true_tile, writes)

    def compute():
        mask = (tile_f32(pred) != 0) != bool(reverse_pred)
        out = np.where(mask, tile_f32(true_tile), false_values()).astype(np.float32)
        write(dst, out)
        fold(out)
    launch.execute(compute)
    record(launch, "select_reduce", "vector", site, writes, reads,
           attrs_of(name, None, reduce_cmd=ReduceCmd(reduce_cmd).name, reverse_pred=bool(reverse_pred)))


def _reduce_into(launch, instr, site, reduce_op, reduce_cmd, reduce_res, lanes_tensor, writes):
    """What folds a per-partition max/min/add of an instruction's output into the VectorE accumulators and reads
    them back (checked now, run in the compute closure)."""
    op, combine = reducer(instr, site, reduce_op, "reduce_op", allowed=("add", "maximum", "minimum", "multiply"))
    target = resolve(reduce_res) if reduce_res is not None else None
    if target is not None:
        writes["reduce_res"] = target
    registers, lanes = launch.vector_accumulator, lanes_of(lanes_tensor)

    def fold(out):
        folded = accumulate(registers, lanes, reduce_cmd, combine.reduce(out, axis=1), combine, op.reduce_identity)
        if target is not None:
            write(target, folded)
    return fold
