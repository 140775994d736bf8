"""Per-instruction costs pinned to the documented formulas (nki-api.md §13) and clocks (ARCH3/ARCH4)."""

import numpy as np
import pytest

import nki_cpu
from cost_kernels import (BF16, instruction, one_matmul_kernel, one_tensor_tensor_kernel, operand, random, region,
                          trace_of)
from nki_cpu import cost
from nki_cpu.cost.instructions import compute_cost

GHZ = {"trn2": {"tensor": 2.4, "vector": 0.96, "scalar": 1.2, "gpsimd": 1.2},
       "trn3": {"tensor": 2.4, "vector": 1.2, "scalar": 1.2, "gpsimd": 1.2}}


def only(est, op):
    (placed,) = [p for p in est.instructions if p.op == op]
    return placed


@pytest.mark.parametrize("target", ["trn2", "trn3"])
@pytest.mark.parametrize("k, m, n, dtype, cycles", [
    (128, 128, 512, BF16, 512),          # max(min(64, 128), 512)
    (128, 128, 1, BF16, 64),             # decode GEMV: weights stationary, one token moving
    (128, 16, 1, BF16, 16),              # max(min(64, 16), 1)
    (128, 1, 512, BF16, 512),            # weights moving: 512 cycles per instruction
    (128, 128, 512, np.float32, 2048),   # fp32 inputs 4x
])
def test_matmul_busy_time_is_the_formula(target, k, m, n, dtype, cycles):
    run = nki_cpu.run_kernel(one_matmul_kernel, random((k, m), dtype), random((k, n), dtype, seed=1), target=target)
    matmul = only(cost.estimate(run.trace), "nc_matmul")
    assert matmul.end - matmul.start == pytest.approx(cycles / 2.4)


@pytest.mark.parametrize("target", ["trn2", "trn3"])
@pytest.mark.parametrize("dtype, cycles", [
    (np.float32, 512),    # both inputs in SBUF, not bf16: max(MIN_II, 2N), NC-v3 VectorE 2 fp32/lane/cycle
    (BF16, 256),          # all-bf16 add on contiguous SBUF: N, halved by the NC-v3+ performance mode
])
def test_tensor_tensor_bf16_vs_fp32(target, dtype, cycles):
    run = nki_cpu.run_kernel(one_tensor_tensor_kernel, random((128, 512), dtype), random((128, 512), dtype, 1),
                             target=target)
    add = only(cost.estimate(run.trace), "tensor_tensor")
    assert add.end - add.start == pytest.approx(cycles / GHZ[target]["vector"])


def _copy(engine, src_dtype="bfloat16", dst_dtype="bfloat16", src_buffer="sbuf", src_stride=None):
    size = {"bfloat16": 2, "float32": 4}
    return instruction(0, "tensor_copy", engine,
                       [operand("dst", (128, 512), dst_dtype, itemsize=size[dst_dtype]),
                        operand("src", (128, 512), src_dtype, src_buffer, size[src_dtype], src_stride,
                                contiguous=src_stride is None)],
                       reads=[region(1, (0, 1024), buffer=src_buffer)], writes=[region(2, (0, 1024))])


@pytest.mark.parametrize("target, ins, cycles", [
    ("trn2", _copy("vector"), 128),                          # bf16 SBUF -> SBUF contiguous: 4x
    ("trn2", _copy("vector", src_buffer="psum"), 256),       # one side in PSUM: 2x
    ("trn2", _copy("vector", "float32"), 256),               # fp32 source: no bf16 mode; 2 fp32/lane/cycle (ARCH3)
    ("trn2", _copy("vector", "float32", "float32", src_stride=32), 512),    # stride > 16 B halves bandwidth
    ("trn2", _copy("scalar"), 512),                          # Trn2 ScalarE has no bf16 speed-up
    ("trn3", _copy("scalar"), 256),                          # Trn3 ScalarE: 2x for bf16
    ("trn2", _copy("gpsimd"), 512),
])
def test_copy_performance_modes(target, ins, cycles):
    assert compute_cost(ins, cost.hardware(target)).cycles == cycles


def test_tiny_instruction_costs_min_ii_and_busy_excludes_the_fixed_latency():
    ins = instruction(0, "activation", "scalar", [operand("dst", (128, 1)), operand("data", (128, 1))],
                      reads=[region(1, (0, 4))], writes=[region(2, (0, 4))], attrs={"act": "exp"})
    result = compute_cost(ins, cost.hardware("trn2"))
    assert result.cycles == 64
    assert result.busy_ns == pytest.approx(64 / 1.2)
    assert result.latency_ns == pytest.approx(200 / 1.2)   # PERF: dependent tiny ops every ~264 cycles


# VectorE formulas are for NC-v2 (one element per lane and cycle); NC-v3 VectorE streams 2 fp32 (ARCH3).
@pytest.mark.parametrize("op, engine, extra, cycles", [
    ("tensor_reduce", "vector", {"op": "add"}, 512 / 2),       # N for fp32
    ("reciprocal", "vector", {}, 8 * 512 / 2),                 # max(MIN_II, 8N)
    ("iota", "gpsimd", {}, 150 + 512),                         # GPSIMD_START + N
    ("tensor_tensor_scan", "vector", {}, 2 * 512 / 2),         # max(MIN_II, 2N)
    ("bn_aggr", "vector", {}, 13 * 512 / 3 / 2),
])
def test_other_formulas(op, engine, extra, cycles):
    ins = instruction(0, op, engine, [operand("dst", (128, 512)), operand("data", (128, 512))],
                      reads=[region(1, (0, 2048))], writes=[region(2, (0, 2048))], attrs=extra)
    assert compute_cost(ins, cost.hardware("trn2")).cycles == pytest.approx(cycles)


def test_unknown_op_gets_the_default_and_is_reported():
    ins = instruction(0, "tensor_partition_reduce", "gpsimd", [operand("dst", (1, 300)), operand("data", (128, 300))],
                      reads=[region(1, (0, 1200))], writes=[region(2, (0, 1200), partitions=(0, 1))])
    result = compute_cost(ins, cost.hardware("trn2"))
    assert (result.cycles, result.documented) == (300, False)
    est = cost.estimate(trace_of([ins]))
    assert est.undocumented_ops == {"tensor_partition_reduce": 1}
    assert "tensor_partition_reduce x1" in cost.summary_table(est)
