"""Engine cycles of one compute instruction (TensorE, VectorE, ScalarE, GpSimd).

One formula per op name in `FORMULAS`, transcribed from the ISA-B1 "Estimated instruction cost"
table (nki-api.md §13), with the NC-v3/v4 performance modes of ARCH3/ARCH4 applied on top and the
ARCH2 strided-access penalty. Symbols: N = elements per partition of the main input (the first
operand read), MIN_II = `Hardware.min_ii_cycles`.

Deliberate deviations from the printed table, all towards realism:
- every VectorE/ScalarE/GpSimd instruction costs at least MIN_II (the table omits it for
  scalar_tensor_tensor, tensor_reduce and max8; MIN_II is the engine's minimum issue interval);
- nc_match_replace8 is printed as `min(MIN_II, N)`; read as max like its siblings max8/find_index8.

Ops without a documented formula get `max(MIN_II, N)` and are reported as undocumented. DMA
instructions are costed in `dma.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..trace import Instruction, Operand
from .hardware import SIXTEEN_BIT_FLOATS, Hardware, itemsize

CycleFormula = Callable[[Instruction, Hardware], float]


@dataclass(frozen=True)
class ComputeCost:
    """busy_ns occupies the engine; latency_ns more pass before dependants may start."""

    cycles: float
    busy_ns: float
    latency_ns: float
    documented: bool


def compute_cost(ins: Instruction, hw: Hardware) -> ComputeCost:
    formula = FORMULAS.get(ins.op)
    cycles = formula(ins, hw) if formula else _one_pass(ins, hw)
    ghz = hw.clock_ghz(ins.engine)
    return ComputeCost(cycles, cycles / ghz, hw.fixed_overhead_cycles / ghz, formula is not None)


# --- operand helpers -----------------------------------------------------------------------------

def _inputs(ins: Instruction) -> list[Operand]:
    """Operands read, in call order (the trace lists written operands first, index operands last)."""
    return [o for o in ins.operands[len(ins.writes):] if o.role != "index"]


def _main(ins: Instruction) -> Operand:
    inputs = _inputs(ins)
    return inputs[0] if inputs else ins.operands[0]


def _role(ins: Instruction, role: str) -> Operand:
    for o in ins.operands:
        if o.role == role:
            return o
    raise ValueError(f"{ins.op} at trace index {ins.seq} has no {role!r} operand")


def _dense_inner(o: Operand) -> bool:
    return o.free_elems <= 1 or o.contiguous or o.inner_stride_bytes <= itemsize(o.dtype)


def _stride_slowdown(ins: Instruction, hw: Hardware) -> float:
    """ARCH2: an on-chip operand whose innermost free stride exceeds 16 bytes halves its interface bandwidth."""
    strided = any(o.buffer != "hbm" and o.free_elems > 1 and o.inner_stride_bytes > hw.sbuf_stride_limit_bytes
                  for o in ins.operands)
    return hw.sbuf_stride_slowdown if strided else 1.0


def _n(ins: Instruction, hw: Hardware) -> float:
    """N of the formulas: elements per partition of the main input, doubled when strided. VectorE
    streams `vector_wide_elems` non-16-bit elements per lane and cycle where the v2 formulas assume
    one (16-bit data has its own performance modes, applied by the formulas)."""
    n = _main(ins).free_elems * _stride_slowdown(ins, hw)
    if ins.engine == "vector" and not _all_16bit(*(o for o in ins.operands if o.role != "index")):
        n /= hw.vector_wide_elems
    return n


def _ii(hw: Hardware, cycles: float) -> float:
    return max(float(hw.min_ii_cycles), cycles)


def _all_16bit(*operands: Operand) -> bool:
    return all(o.dtype in SIXTEEN_BIT_FLOATS for o in operands)


# --- TensorE --------------------------------------------------------------------------------------

def _matmul(ins: Instruction, hw: Hardware) -> float:
    """max(min(64, N_stationary), N_moving); fp32 inputs 4x (fp32 transposes 2x); fp8 double_row
    operands [K, 2, F] count F (ISA-B1, ARCH3)."""
    stationary, moving = _role(ins, "stationary"), _role(ins, "moving")
    rows = 2 if ins.attrs.get("perf_mode") == "double_row" else 1
    cycles = max(min(hw.matmul_min_cycles, stationary.free_elems // rows), moving.free_elems // rows)
    if "float32" in (stationary.dtype, moving.dtype):
        cycles *= hw.fp32_transpose_slowdown if ins.attrs.get("is_transpose") else hw.fp32_matmul_slowdown
    return cycles


def _transpose(ins: Instruction, hw: Hardware) -> float:
    """TensorE max(P, min(64, F)) (fp32 2x, ARCH3 transpose mode); VectorE max(MIN_II, N)."""
    data = _role(ins, "data")
    if ins.engine != "tensor":
        return _ii(hw, _n(ins, hw))
    cycles = max(data.partitions, min(hw.matmul_min_cycles, data.free_elems))
    return cycles * (hw.fp32_transpose_slowdown if data.dtype == "float32" else 1.0)


# --- VectorE / ScalarE / GpSimd -------------------------------------------------------------------

def _one_pass(ins: Instruction, hw: Hardware) -> float:
    """max(MIN_II, N): one input streamed once (activation, bn_stats, range_select, shuffle, ...)."""
    return _ii(hw, _n(ins, hw))


def _two_pass(ins: Instruction, hw: Hardware) -> float:
    """max(MIN_II, 2N): tensor_tensor_scan; ARCH2 rule of thumb for two streamed inputs."""
    return _ii(hw, 2 * _n(ins, hw))


def _with_register_read(ins: Instruction, hw: Hardware) -> float:
    """max(MIN_II, N) + MIN_II: activation_reduce, tensor_scalar_reduce, and activation with reduce_res
    (ISA-B1; PERF: reading reduce_res costs ~64 cycles)."""
    return _one_pass(ins, hw) + hw.min_ii_cycles


def _activation(ins: Instruction, hw: Hardware) -> float:
    """max(MIN_II, N); scale, bias and the accumulate are free, reading reduce_res is not."""
    return _with_register_read(ins, hw) if len(ins.writes) > 1 else _one_pass(ins, hw)


def _copy_speedup(ins: Instruction, hw: Hardware) -> float:
    """Performance modes of tensor_copy / tensor_scalar for bf16/fp16 dst and data (ARCH3, ARCH4)."""
    dst, data = ins.operands[0], _main(ins)
    if not _all_16bit(dst, data):
        return 1.0
    if ins.engine == "scalar":
        return hw.scalar_copy_speedup
    if ins.engine != "vector":
        return 1.0
    in_sbuf = dst.buffer == data.buffer == "sbuf"
    one_in_psum = {dst.buffer, data.buffer} == {"sbuf", "psum"}
    dense = _dense_inner(dst) and _dense_inner(data)
    if in_sbuf and dense:
        return hw.vector_copy_speedup_contiguous
    return hw.vector_copy_speedup_other if in_sbuf or (one_in_psum and dense) else 1.0


def _copy_like(ins: Instruction, hw: Hardware) -> float:
    """tensor_copy, tensor_scalar: max(MIN_II, N) at v2 speed, divided by the performance mode."""
    return _ii(hw, _n(ins, hw) / _copy_speedup(ins, hw))


def _tensor_tensor(ins: Instruction, hw: Hardware) -> float:
    """VectorE: N if one input is in PSUM and the other in SBUF, or all-bf16 add/multiply/subtract on
    contiguous SBUF data; else 2N (ISA-B1). NC-v3+ halves it for bf16/fp16 SBUF inputs (ARCH3).
    Other engines: 2N (two streamed inputs, ARCH2)."""
    dst, (a, b) = ins.operands[0], _inputs(ins)[:2]
    n = _n(ins, hw)
    if ins.engine != "vector":
        return _ii(hw, 2 * n)
    both_sbuf = a.buffer == b.buffer == "sbuf"
    split = {a.buffer, b.buffer} == {"psum", "sbuf"}
    bf16_fast = (both_sbuf and all(o.dtype == "bfloat16" for o in (dst, a, b))
                 and ins.attrs.get("op") in ("add", "multiply", "subtract")
                 and all(_dense_inner(o) for o in (dst, a, b)))
    cycles = n if split or bf16_fast else 2 * n
    if both_sbuf and _all_16bit(dst, a, b):
        cycles /= hw.vector_tensor_tensor_speedup
    return _ii(hw, cycles)


def _scalar_tensor_tensor(ins: Instruction, hw: Hardware) -> float:
    """N if data and operand1 are bf16, op0 = subtract, op1 = multiply and N is even; else 2N."""
    data, other = _role(ins, "data"), _role(ins, "operand1")
    n = data.free_elems
    fast = (data.dtype == other.dtype == "bfloat16" and ins.attrs.get("op0") == "subtract"
            and ins.attrs.get("op1") == "multiply" and n % 2 == 0)
    return _ii(hw, (1 if fast else 2) * _n(ins, hw))


def _tensor_reduce(ins: Instruction, hw: Hardware) -> float:
    """N/2 for bf16 in and out with add or max; else N."""
    fast = _main(ins).dtype == ins.operands[0].dtype == "bfloat16" and ins.attrs.get("op") in ("add", "maximum")
    return _ii(hw, _n(ins, hw) / (2 if fast else 1))


def _predicated(ins: Instruction, hw: Hardware) -> float:
    """tensor_copy_predicated (and select_reduce): N if data and predicate are split between SBUF
    and PSUM, else 2N."""
    data, predicate = _inputs(ins)[:2]
    split = {data.buffer, predicate.buffer} == {"psum", "sbuf"}
    return _ii(hw, (1 if split else 2) * _n(ins, hw))


def _memset(ins: Instruction, hw: Hardware) -> float:
    """max(MIN_II, N/2) for 0 into bf16/fp16, else max(MIN_II, N) (N of dst)."""
    half = ins.attrs.get("value") == 0.0 and _all_16bit(ins.operands[0])
    return _ii(hw, _n(ins, hw) / (2 if half else 1))


def _reciprocal(ins: Instruction, hw: Hardware) -> float:
    """VectorE reciprocal: max(MIN_II, 8N)."""
    return _ii(hw, 8 * _n(ins, hw))


def _bn_aggr(ins: Instruction, hw: Hardware) -> float:
    """max(MIN_II, 13 * (N / 3))."""
    return _ii(hw, 13 * _n(ins, hw) / 3)


def _gpsimd_start(ins: Instruction, hw: Hardware) -> float:
    """iota, affine_select: GPSIMD_START + N (N of dst)."""
    return hw.gpsimd_start_cycles + ins.operands[0].free_elems * _stride_slowdown(ins, hw)


def _local_gather(ins: Instruction, hw: Hardware) -> float:
    """150 + valid * k / C, C = ((28 + t*k) / (t*k)) / min(4 / dtype_size, k), t = 4, k = elements per index."""
    k = ins.attrs.get("num_elem_per_idx", 1)
    valid = ins.attrs.get("num_valid_indices", 1)
    t = 4
    c = ((28 + t * k) / (t * k)) / min(4 / itemsize(_role(ins, "src_buffer").dtype), k)
    return hw.gpsimd_start_cycles + valid * k / c


def _exponential(ins: Instruction, hw: Hardware) -> float:
    """VectorE exponential (Trn3): 4x the throughput of ScalarE exp, i.e. max(MIN_II, N / 4) (ARCH4)."""
    return _ii(hw, _n(ins, hw) / hw.exponential_speedup)


FORMULAS: dict[str, CycleFormula] = {
    "nc_matmul": _matmul,
    "nc_transpose": _transpose,
    "activation": _activation,
    "activation_reduce": _with_register_read,
    "tensor_scalar_reduce": _with_register_read,
    "tensor_scalar": _copy_like,
    "tensor_copy": _copy_like,
    "dropout": _one_pass,
    "bn_stats": _one_pass,
    "range_select": _one_pass,
    "nc_stream_shuffle": _one_pass,
    "tensor_scalar_cumulative": _one_pass,      # one streamed input (ARCH2 rule of thumb)
    "max8": _one_pass,
    "nc_find_index8": _one_pass,
    "nc_match_replace8": _one_pass,
    "tensor_tensor": _tensor_tensor,
    "scalar_tensor_tensor": _scalar_tensor_tensor,
    "tensor_tensor_scan": _two_pass,
    "tensor_reduce": _tensor_reduce,
    "tensor_copy_predicated": _predicated,
    "select_reduce": _predicated,
    "memset": _memset,
    "reciprocal": _reciprocal,
    "bn_aggr": _bn_aggr,
    "iota": _gpsimd_start,
    "affine_select": _gpsimd_start,
    "local_gather": _local_gather,
    "exponential": _exponential,
}
