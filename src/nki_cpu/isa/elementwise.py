"""Element-wise instructions on VectorE / ScalarE / GpSimd.

tensor_tensor, tensor_scalar, scalar_tensor_tensor, tensor_copy, tensor_copy_predicated, memset,
reciprocal, exponential. Operands are read as [P, F] (free dims flattened), computed in fp32 and
rounded once to dst.dtype; bitvec operators work on the raw integers.
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site, usage
from ..context import current
from ..dtypes import as_dtype, convert
from ..tensor import NkiTensor
from .common import (accumulate, attrs_of, bits, check_buffers, check_op, check_same_elements, compute_into,
                     lanes_of, pick_engine, record, resolve, scalar_operand, tile, tile_f32, write, write_bits)
from .enums import engine as Engine
from .enums import reduce_cmd as ReduceCmd

# Exact integer arithmetic used when every operand is a 32-bit integer (GpSimd int path).
_INT_EXACT = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "maximum": np.maximum,
              "minimum": np.minimum}
_INT32_NAMES = ("int32", "uint32")


def _ints(dst, a, b) -> bool:
    return dst.dtype.name in _INT32_NAMES and a.dtype.name in _INT32_NAMES and b.dtype.name in _INT32_NAMES


def _apply_binary(op, a, b, reverse=False):
    return op.binary(b, a) if reverse else op.binary(a, b)


def tensor_tensor(dst, data1, data2, op, engine=Engine.unknown, name=None):
    launch, site = current(), kernel_site()
    alu = check_op("tensor_tensor", site, op, "op", binary=True)
    dst, data1, data2 = resolve(dst), resolve(data1), resolve(data2)
    operands = {"dst": dst, "data1": data1, "data2": data2}
    integer = alu.name in _INT_EXACT and _ints(dst, data1, data2)
    any_psum = integer and "psum" in (dst.alloc.kind, data1.alloc.kind, data2.alloc.kind)
    default = "gpsimd" if alu.name == "power" or (integer and not any_psum) else "vector"
    eng = pick_engine(engine, default)
    check_buffers("tensor_tensor", eng, site, operands)
    if data1.alloc.kind == "psum" and data2.alloc.kind == "psum":
        fail("tensor_tensor", "at most one input may be in PSUM", "data1 and data2 both in PSUM", site)
    check_same_elements("tensor_tensor", site, "dst", dst, {"data1": data1, "data2": data2})
    if alu.bitvec:
        _require_ints("tensor_tensor", site, alu, operands)

        def compute():
            write_bits(dst, alu.binary(bits(data1), bits(data2)))
    elif integer:
        exact = _INT_EXACT[alu.name]

        def compute():
            write(dst, exact(tile(data1).astype(np.int64), tile(data2).astype(np.int64)))
    else:
        binary = alu.binary

        def compute():
            a, b = tile_f32(data1), tile_f32(data2)
            if not compute_into(dst, binary, a, b):
                write(dst, binary(a, b))
    launch.execute(compute)
    record(launch, "tensor_tensor", eng, site, {"dst": dst}, {"data1": data1, "data2": data2},
           attrs_of(name, engine, op=alu.name))


def tensor_scalar(dst, data, op0, operand0=None, reverse0=False, op1=None, operand1=None, reverse1=False,
                  engine=Engine.unknown, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    first = check_op("tensor_scalar", site, op0, "op0", binary=True, unary=True)
    second = check_op("tensor_scalar", site, op1, "op1", binary=True, unary=True) if op1 is not None else None
    eng = pick_engine(engine, "vector")
    operands = {"dst": dst, "data": data}
    check_buffers("tensor_scalar", eng, site, operands)
    check_same_elements("tensor_scalar", site, "dst", dst, {"data": data})
    if second is not None and first.bitvec != second.bitvec:
        fail("tensor_scalar", "op0 and op1 must both be arithmetic or both bitvec",
             f"op0=nl.{first.name}, op1=nl.{second.name}", site)
    if eng == "scalar" and launch.target.nc_version <= 3:
        pair = (first.name, second.name if second else None)
        if pair not in (("multiply", "add"), ("multiply", None), ("add", None)):
            fail("tensor_scalar", "ScalarE supports only (multiply, add), (multiply, None) and (add, None) on trn2",
                 f"(op0, op1) = {pair}", site)
    parts = data.shape[0]
    reads = {"data": data}
    steps = [(op, value, reverse, role) for op, value, reverse, role in
             ((first, operand0, reverse0, "operand0"), (second, operand1, reverse1, "operand1")) if op is not None]
    if first.bitvec:
        _require_ints("tensor_scalar", site, first, operands)
        chain = [(op, None if op.binary is None else _int_operand(value, role, reads), reverse)
                 for op, value, reverse, role in steps]

        def compute():
            result = bits(data)
            for op, operand, reverse in chain:
                result = _bitvec_step(op, result, None if operand is None else operand(), reverse)
            write_bits(dst, result)
    else:
        chain = [(op, None if op.binary is None else scalar_operand("tensor_scalar", site, value, parts, role, reads),
                  reverse) for op, value, reverse, role in steps]

        def compute():
            result = tile_f32(data)
            for op, operand, reverse in chain:
                result = op.unary(result) if operand is None else _apply_binary(op, result, operand(), reverse)
            write(dst, result)
    launch.execute(compute)
    record(launch, "tensor_scalar", eng, site, {"dst": dst}, reads,
           attrs_of(name, engine, op0=first.name, op1=second.name if second else None))


def scalar_tensor_tensor(dst, data, op0, operand0, op1, operand1, reverse0=False, reverse1=False, name=None):
    launch, site = current(), kernel_site()
    dst, data, other = resolve(dst), resolve(data), resolve(operand1)
    first = check_op("scalar_tensor_tensor", site, op0, "op0", binary=True)
    second = check_op("scalar_tensor_tensor", site, op1, "op1", binary=True)
    for op in (first, second):
        if op.bitvec:
            fail("scalar_tensor_tensor", "only arithmetic operators are supported", f"nl.{op.name}", site)
    operands = {"dst": dst, "data": data, "operand1": other}
    check_buffers("scalar_tensor_tensor", "vector", site, operands)
    if data.alloc.kind == "psum" and other.alloc.kind == "psum":
        fail("scalar_tensor_tensor", "data and operand1 cannot both be in PSUM", "both in PSUM", site)
    check_same_elements("scalar_tensor_tensor", site, "dst", dst, {"data": data, "operand1": other})
    reads = {"data": data}
    scalar = scalar_operand("scalar_tensor_tensor", site, operand0, data.shape[0], "operand0", reads)
    reads["operand1"] = other

    def compute():
        result = _apply_binary(first, tile_f32(data), scalar(), reverse0)
        write(dst, _apply_binary(second, result, tile_f32(other), reverse1))
    launch.execute(compute)
    record(launch, "scalar_tensor_tensor", "vector", site, {"dst": dst}, reads,
           attrs_of(name, None, op0=first.name, op1=second.name))


def tensor_copy(dst, src, engine=Engine.unknown, name=None, dtype=None):
    """The Beta 2 tutorials pass an undocumented dtype=: values are rounded to it, then stored as dst.dtype."""
    launch, site = current(), kernel_site()
    dst, src = resolve(dst), resolve(src)
    eng = pick_engine(engine, "vector")
    if eng == "scalar" and not launch.target.scalar_engine_copy:
        fail("tensor_copy", f"ScalarE has no tensor_copy on {launch.target.name}; use activation(op=nl.copy)",
             "engine=scalar", site)
    check_buffers("tensor_copy", eng, site, {"dst": dst, "src": src})
    check_same_elements("tensor_copy", site, "dst", dst, {"src": src})
    kind = as_dtype(dtype) if dtype is not None else src.dtype

    def compute():
        values = tile(src)
        if dtype is not None:
            values = convert(values, src.dtype, kind)
        dst.np()[...] = convert(values, kind, dst.dtype).reshape(dst.shape)
    launch.execute(compute)
    record(launch, "tensor_copy", eng, site, {"dst": dst}, {"src": src},
           attrs_of(name, engine, dtype=kind.name if dtype is not None else None))


def tensor_copy_predicated(dst, src, predicate, reverse_pred=False, name=None):
    launch, site = current(), kernel_site()
    dst, src, pred = resolve(dst), resolve(src), resolve(predicate)
    check_buffers("tensor_copy_predicated", "vector", site, {"dst": dst, "src": src, "predicate": pred})
    if not pred.dtype.is_int:
        fail("tensor_copy_predicated", "predicate must be an integer (uint8/16/32) tile", f"predicate {pred.dtype.name}", site)
    if src.alloc.kind == "psum" and pred.alloc.kind == "psum":
        fail("tensor_copy_predicated", "src and predicate cannot both be in PSUM", "both in PSUM", site)
    check_same_elements("tensor_copy_predicated", site, "dst", dst, {"src": src, "predicate": pred})
    def compute():
        mask = (tile(pred) != 0) != bool(reverse_pred)
        current_values = tile(dst)
        incoming = convert(tile(src), src.dtype, dst.dtype)
        dst.np()[...] = np.where(mask, incoming, current_values).reshape(dst.shape)
    launch.execute(compute)
    record(launch, "tensor_copy_predicated", "vector", site, {"dst": dst}, {"src": src, "predicate": pred},
           attrs_of(name, None, reverse_pred=bool(reverse_pred)), read_back=("dst",))


def memset(dst, value, engine=Engine.unknown, name=None):
    launch, site = current(), kernel_site()
    dst = resolve(dst)
    eng = pick_engine(engine, "vector")
    if eng in ("tensor", "dma"):
        fail("memset", "memset runs on VectorE or GpSimd", f"engine={eng}", site)
    check_buffers("memset", eng, site, {"dst": dst})
    if dst.dtype.is_int and isinstance(value, (float, np.floating)) and not float(value).is_integer():
        fail("memset", "the value of an integer memset must be an integer", f"value {value!r} for {dst.dtype.name}", site)
    if dst.dtype.kind == "packed" and value != 0:
        fail("memset", "packed x4 types can only be set to 0", f"value {value!r}", site)
    if dst.dtype.kind == "packed":
        def compute():
            dst.np()[...] = 0
    else:
        fill = np.full((1, 1), value, dtype=np.float64 if dst.dtype.is_int else np.float32)

        def compute():
            write(dst, fill)
    launch.execute(compute)
    record(launch, "memset", eng, site, {"dst": dst}, {}, attrs_of(name, engine, value=float(value)))


def reciprocal(dst, data, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    check_buffers("reciprocal", "vector", site, {"dst": dst, "data": data})
    check_same_elements("reciprocal", site, "dst", dst, {"data": data})
    def compute():
        with np.errstate(divide="ignore"):
            write(dst, np.float32(1.0) / tile_f32(data))
    launch.execute(compute)
    record(launch, "reciprocal", "vector", site, {"dst": dst}, {"data": data}, attrs_of(name, None))


def exponential(dst, src, max_value=0.0, reduce_res=None, reduce_cmd=ReduceCmd.idle, reduce_init=0.0, name=None):
    launch, site = current(), kernel_site()
    if not launch.target.has_exponential:
        fail("exponential", "nisa.exponential exists only on trn3 (NeuronCore-v4)", f"target {launch.target.name}", site)
    dst, src = resolve(dst), resolve(src)
    check_buffers("exponential", "vector", site, {"dst": dst, "src": src})
    check_same_elements("exponential", site, "dst", dst, {"src": src})
    reads = {"src": src}
    shift = scalar_operand("exponential", site, max_value, src.shape[0], "max_value", reads)
    writes = {"dst": dst}
    if reduce_res is not None:
        writes["reduce_res"] = resolve(reduce_res)
    registers, lanes, result = launch.vector_accumulator, lanes_of(src), writes.get("reduce_res")

    def compute():
        with np.errstate(over="ignore"):
            out = np.exp(tile_f32(src) - shift()).astype(np.float32)
        write(dst, out)
        regs = accumulate(registers, lanes, reduce_cmd, out.sum(axis=1, dtype=np.float32), np.add, float(reduce_init))
        if result is not None:
            write(result, regs)
    launch.execute(compute)
    record(launch, "exponential", "vector", site, writes, reads,
           attrs_of(name, None, reduce_cmd=ReduceCmd(reduce_cmd).name))


def _require_ints(instr, site, op, operands):
    for role, t in operands.items():
        if not t.dtype.is_int:
            fail(instr, f"bitvec operator nl.{op.name} needs integer dtypes", f"{role} {t.dtype.name}", site)


def _int_operand(value, role, reads):
    """Checked now; returns what reads the operand's bits, for the compute closure."""
    if isinstance(value, NkiTensor):
        t = resolve(value)
        reads[role] = t
        return lambda: bits(t)
    if value is None:
        usage("tensor_scalar", f"{role} is required for a binary bitvec operator")
    number = np.uint64(int(value) & 0xFFFFFFFFFFFFFFFF)
    return lambda: number


def _bitvec_step(op, values, operand, reverse):
    if op.binary is None:
        return op.unary(values)
    return _apply_binary(op, values, operand, reverse)

