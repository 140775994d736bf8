"""What every instruction shares: engine choice, operand checks, fp32 reads, rounded writes, trace records.

Instruction bodies stay short by leaning on these helpers: read operands as [P, F] arrays
(partition dim first, free dims flattened, which is how engines stream them), compute in fp32,
write once through `write` (one rounding to dst.dtype), and `record` the instruction.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..checks import fail, usage
from ..context import Launch
from ..dtypes import bfloat16, cast, float32, to_f32
from ..ops import Op
from ..tensor import NkiTensor, concrete, index_tensor
from ..trace import RegionFields
from .enums import engine as Engine
from .enums import reduce_cmd as ReduceCmd

ENGINE_NAMES = {
    Engine.tensor: "tensor", Engine.scalar: "scalar", Engine.gpsimd: "gpsimd", Engine.dma: "dma",
    Engine.vector: "vector", Engine.sync: "dma",
}

# Buffers an engine cannot touch (nki-api.md §10 common rules; ARCH2 engine descriptions).
FORBIDDEN_BUFFERS = {
    "vector": {"hbm": "compute engines cannot access HBM; DMA it to SBUF first"},
    "scalar": {"hbm": "compute engines cannot access HBM; DMA it to SBUF first"},
    "gpsimd": {"hbm": "compute engines cannot access HBM; DMA it to SBUF first",
               "psum": "GpSimd cannot access PSUM"},
    "dma": {"psum": "DMA cannot access PSUM (NKI 0.3+); evict it to SBUF with tensor_copy first"},
}


def pick_engine(requested, default: str) -> str:
    """An explicit engine= wins; engine.unknown (or None) means the instruction's documented default."""
    if not requested:                      # None or engine.unknown (0)
        return default
    name = ENGINE_NAMES.get(requested)
    if name is None:
        raise ValueError(f"unknown engine {requested!r}")
    return name


def resolve(t) -> NkiTensor:
    """Static view of a tensor operand (scalar offsets applied)."""
    if not isinstance(t, NkiTensor):
        usage("operand", f"expected an NKI tensor, got {type(t).__name__}")
    return t if t.indirect is None else concrete(t)


def check_buffers(instr: str, engine: str, site, operands: dict) -> None:
    """Engine access rules and, for compute engines, the start-partition (quadrant) rule."""
    forbidden = FORBIDDEN_BUFFERS.get(engine, _NOTHING)
    compute = engine in _COMPUTE_ENGINES
    for role, t in operands.items():
        kind = t.alloc.kind
        if kind in forbidden:
            fail(instr, forbidden[kind], f"{role} in {kind.upper()} on the {engine} engine", site)
        if compute:
            layout = t._layout or t.layout()
            if layout.partitions[0]:
                check_start_partition(instr, site, role, t)
            if layout.free_dims > MAX_FREE_DIMS:
                fail(instr, f"an access pattern has at most {MAX_FREE_DIMS} free dims (after merging contiguous ones)",
                     f"{role} {t.shape} with strides {t.strides}", site)


_NOTHING: dict = {}
MAX_FREE_DIMS = 4       # ARCH2: free-dim access patterns have up to 4 dims
_COMPUTE_ENGINES = frozenset(("vector", "scalar", "gpsimd"))


def check_start_partition(instr: str, site, role: str, t: NkiTensor) -> None:
    """ARCH2: P > 64 starts at 0; 32 < P <= 64 at 0 or 64; P <= 32 at a multiple of 32."""
    count = t.shape[0]
    start = t.layout().partitions[0]
    if start == 0:
        return
    if count > 64 or (count > 32 and start != 64) or start % 32:
        allowed = "0" if count > 64 else ("0 or 64" if count > 32 else "0, 32, 64 or 96")
        fail(instr, f"an access of {count} partitions must start at partition {allowed} (quadrant rule)",
             f"{role} starts at partition {start}", site)


def check_same_elements(instr: str, site, reference: str, ref: NkiTensor, others: dict) -> None:
    """Element-wise operands: equal partitions and equal elements per partition."""
    parts, elems = ref.shape[0], (ref._layout or ref.layout()).free_elems
    for role, t in others.items():
        if t.shape[0] != parts or (t._layout or t.layout()).free_elems != elems:
            fail(instr, "operands need equal partitions and elements per partition",
                 f"{reference} {ref.shape} vs {role} {t.shape}", site)


def check_op(instr: str, site, op, role: str, *, binary: bool = False, unary: bool = False,
             activation: bool = False) -> Op:
    if not isinstance(op, Op):
        usage(instr, f"{role} must be an nl operator such as nl.add, got {op!r}", site)
    if op.hardware_note:
        fail(instr, op.hardware_note, f"{role}=nl.{op.name}", site)
    ok = (binary and op.binary is not None) or (unary and op.unary is not None) or \
         (activation and op.activation is not None)
    if not ok:
        kinds = " or ".join(k for k, flag in (("binary ALU", binary), ("unary ALU", unary),
                                              ("activation", activation)) if flag)
        usage(instr, f"{role}=nl.{op.name} is not a {kinds} operator", site)
    return op


REDUCE_UFUNCS = {"add": np.add, "multiply": np.multiply, "maximum": np.maximum, "minimum": np.minimum,
                 "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor}


def reducer(instr: str, site, op, role: str = "op", allowed=tuple(REDUCE_UFUNCS)):
    """The ALU op of a reduction and its NumPy ufunc; `allowed` narrows the operators an instruction takes."""
    alu = check_op(instr, site, op, role, binary=True)
    if alu.name not in allowed:
        fail(instr, f"{role} must be one of {sorted(allowed)}", f"nl.{alu.name}", site)
    return alu, REDUCE_UFUNCS[alu.name]


def tile(t: NkiTensor) -> np.ndarray:
    """Storage values as [P, F] (HBM: [1, N]); a view when possible, else a copy."""
    view = t.tile_view()
    if view is None:
        return t.np().reshape((t.shape[0], -1) if t.alloc.kind != "hbm" else (1, -1))
    return view


def tile_f32(t: NkiTensor) -> np.ndarray:
    values = t.tile_view()
    if values is not None:
        return values if values.dtype is _F32 else to_f32(values, t.dtype)
    values = t.np()                  # free dims that do not merge: bf16 converts while it gathers, other dtypes
    if values.dtype is not _BF16 or values.size < 1024:  # gather first (NumPy's astype over a strided,
        values = tile(t)                                  # broadcast view is some 20x slower)
    shape = (t.shape[0], -1) if t.alloc.kind != "hbm" else (1, -1)
    return (values if values.dtype is _F32 else to_f32(values, t.dtype)).reshape(shape)


def write(t: NkiTensor, values: np.ndarray) -> None:
    """Round once to t.dtype (RNE, integer saturation) and store through the view."""
    if not _stores_as_is(t.dtype, values.dtype):
        values = cast(values, t.dtype)
    target = t.tile_view()
    if target is not None and (values.ndim < 2 or values.shape == target.shape):
        target[...] = values
    else:
        view = t.np()
        view[...] = values.reshape(view.shape) if values.size == view.size else values


def compute_into(t: NkiTensor, ufunc, a: np.ndarray, b) -> bool:
    """Fast path: an fp32 destination with a [P, F] view receives a ufunc's result directly."""
    if not _stores_as_is(t.dtype, _F32) or type(ufunc) is not np.ufunc:
        return False
    target = t.tile_view()
    if target is None or target.shape != a.shape:
        return False
    ufunc(a, b, out=target)
    return True


_F32 = np.dtype(np.float32)
_BF16 = bfloat16.storage


def _stores_as_is(dtype, values_dtype: np.dtype) -> bool:
    """Values of `values_dtype` need no rounding into `dtype` (tfloat32 is stored as float32 yet rounds)."""
    return values_dtype == dtype.storage and dtype.name != "tfloat32"


def bits(t: NkiTensor) -> np.ndarray:
    """Integer operands as their unsigned bit patterns (uint64), so shifts are logical."""
    values = tile(t)
    unsigned = np.dtype(f"u{values.dtype.itemsize}")
    return values.view(unsigned).astype(np.uint64)


def write_bits(t: NkiTensor, values: np.ndarray) -> None:
    """Store integer results keeping their low bits (bitvec semantics)."""
    view = t.np()
    view[...] = values.astype(t.dtype.storage).reshape(view.shape)


def scalar_operand(instr: str, site, value, partitions: int, role: str, operands: dict, *,
                   require_fp32: bool = True) -> Callable[[], np.ndarray | np.float32]:
    """A per-partition operand: a Python number, or a (P, 1) tensor broadcast along the free dim. Checked now;
    returns what reads its values, for the instruction's compute closure."""
    if isinstance(value, NkiTensor):
        t = resolve(value)
        if t.alloc.kind == "hbm":
            fail(instr, "compute engines cannot access HBM; DMA it to SBUF first", f"{role} in HBM", site)
        if t.elems_per_partition != 1 or t.shape[0] not in (1, partitions):
            fail(instr, f"{role} must be a scalar or a ({partitions}, 1) tile", f"{role} {t.shape}", site)
        if require_fp32 and t.dtype is not float32:
            fail(instr, f"arithmetic {role} tiles must be float32", f"{role} dtype {t.dtype.name}", site)
        operands[role] = t
        return lambda: tile_f32(t)
    if isinstance(value, (bool, int, float, np.number)):
        number = np.float32(value)
        return lambda: number
    usage(instr, f"{role} must be a number or a (P, 1) tensor, got {type(value).__name__}", site)


def record(launch: Launch, op: str, engine: str, site, writes: dict, reads: dict, attrs: dict, *,
           dma_bytes: int = 0, macs: int = 0, read_back: tuple = ()) -> None:
    """Append the instruction to the trace; `read_back` lists written roles that are also read."""
    operands, write_regions, read_regions = [], [], []
    indirect = []
    for role, t in writes.items():
        operands.append(t.operand(role))
        write_regions.append(t._region or t.region())
        if t.via is not None:
            indirect.append(t)
    for role, t in reads.items():
        operands.append(t.operand(role))
        read_regions.append(t._region or t.region())
        if t.via is not None:
            indirect.append(t)
    for role in read_back:
        read_regions.append(writes[role].region())
    for t in indirect:
        _add_index_read(t, operands, read_regions)
    launch.record(op, engine, site, tuple(operands), tuple(read_regions), tuple(write_regions), attrs, dma_bytes, macs)


def _add_index_read(t: NkiTensor, operands: list, read_regions: list) -> None:
    index = index_tensor(t)
    if index is not None:
        operands.append(index.operand("index"))
        read_regions.append(index.region())


def region(t: NkiTensor) -> RegionFields:
    """The fields of the trace Region t covers."""
    return t._region or t.region()


def accumulate(registers: np.ndarray, lanes: slice, cmd, reduced: np.ndarray, combine, init: float) -> np.ndarray:
    """Per-lane accumulator update shared by ScalarE and VectorE reductions.

    reset / reset_reduce / load_reduce start from `init`; reduce / reset_reduce / load_reduce then
    fold this instruction's per-partition result in with `combine`. Returns the lanes' new values.
    """
    if cmd in RESETTING:
        registers[lanes] = init
    if cmd in _REDUCING:
        registers[lanes] = combine(registers[lanes], reduced.reshape(-1)).astype(np.float32)
    return registers[lanes].reshape(-1, 1)


RESETTING = frozenset({ReduceCmd.reset, ReduceCmd.reset_reduce, ReduceCmd.load_reduce})
_REDUCING = frozenset({ReduceCmd.reduce, ReduceCmd.reset_reduce, ReduceCmd.load_reduce})


def lanes_of(t: NkiTensor) -> slice:
    start, stop = t.layout().partitions
    return slice(start, stop)


def attrs_of(name, engine, **values) -> dict:
    """Trace attrs: the given options (None dropped), the requested engine and the name= label."""
    attrs = values if None not in values.values() else {k: v for k, v in values.items() if v is not None}
    if engine:                              # None and engine.unknown (0) request nothing
        attrs["engine_requested"] = Engine(engine).name
    if name:
        attrs["name"] = name
    return attrs
