"""Our calibration kernels (calibration/kernels/) against NumPy, and their instruction counts.

The kernels reproduce the instruction streams of published kernels (see each docstring); the
counts at 2048 below are those of the published kernels' own traces on the interpreter (the
originals are not part of the repository; `make calibrate SOURCES=...` runs them). At 2048 a
kernel takes 10+ s on the interpreter, so those runs are marked slow; the fast tests run the same
code at smaller, non-square sizes (a swapped layout or transpose would fail them).
"""
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import nki_cpu

KERNELS = Path(__file__).resolve().parents[2] / "calibration" / "kernels"
MATMULS = KERNELS / "autotune_matmul.py"
BF16 = ml_dtypes.bfloat16

# kernel -> (layout, instruction count per op of the published kernel at 2048x2048x2048 on trn2)
_BLOCKED = {"memset": 192, "dma_copy": 384, "nc_matmul": 1024, "tensor_copy": 128, "tensor_tensor": 128}
_RESIDENT = {"memset": 64, "nc_matmul": 1024, "tensor_copy": 64}
PUBLISHED = {
    "lhsT_rhs_hand_9092": ("lhsT_rhs", _BLOCKED),
    "lhs_rhs_handtuned_8926": ("lhs_rhs", {**_BLOCKED, "memset": 144, "dma_transpose": 128, "dma_copy": 192}),
    "lhsT_rhs_manual_ir_8045": ("lhsT_rhs", _BLOCKED),
    "lhsT_rhs_manual_7905": ("lhsT_rhs", {**_BLOCKED, "tensor_copy": 192}),
    "lhs_rhsT_gen_6173": ("lhs_rhsT", {**_RESIDENT, "dma_transpose": 320, "dma_copy": 64}),
    "lhsT_rhsT_gen_6057": ("lhsT_rhsT", {**_RESIDENT, "dma_transpose": 64, "dma_copy": 320}),
    "lhs_rhs_gen_6021": ("lhs_rhs", {**_RESIDENT, "dma_transpose": 256, "dma_copy": 128}),
    "lhsT_rhs_gen_5860": ("lhsT_rhs", {**_RESIDENT, "dma_copy": 384}),
    "double_matmul_gen_5473": ("double", {"dma_transpose": 1088, "memset": 128, "nc_matmul": 2048, "tensor_copy": 384,
                                          "nc_transpose": 256, "dma_copy": 128}),
}

# Small sizes (M, K, N) each kernel's fixed blocks allow, with more than one block where it matters.
SMALL = {
    "lhsT_rhs_hand_9092": (512, 2048, 512),           # two K blocks: SBUF accumulation
    "lhs_rhs_handtuned_8926": (1024, 1024, 1024),      # two N blocks: views of the accumulator
    "lhsT_rhs_manual_ir_8045": (512, 2048, 512),
    "lhsT_rhs_manual_7905": (512, 2048, 512),
    "lhs_rhsT_gen_6173": (256, 512, 1024),
    "lhsT_rhsT_gen_6057": (256, 512, 1024),
    "lhs_rhs_gen_6021": (512, 384, 1024),             # two 256-row blocks of lhs
    "lhsT_rhs_gen_5860": (384, 256, 1024),
    "double_matmul_gen_5473": (256, 1024, 1024),      # Q [M, K], K [N, K], V [N, N]
}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _inputs(layout: str, m: int, k: int, n: int, rng) -> tuple[list[np.ndarray], np.ndarray]:
    """bf16 kernel inputs in `layout` and the fp32-accumulated NumPy product they should give."""
    def draw(*shape):
        return rng.standard_normal(shape, dtype=np.float32).astype(BF16)

    if layout == "double":
        q, kk, v = draw(m, k), draw(n, k), draw(n, n)
        scores = (q.astype(np.float32) @ kk.astype(np.float32).T).astype(BF16)
        return [q, kk, v], scores.astype(np.float32) @ v.astype(np.float32)
    lhs, rhs = draw(m, k), draw(k, n)
    args = [lhs.T.copy() if layout.startswith("lhsT") else lhs, rhs.T.copy() if layout.endswith("rhsT") else rhs]
    return args, lhs.astype(np.float32) @ rhs.astype(np.float32)


def _run(name: str, m: int, k: int, n: int, rng):
    layout, _ = PUBLISHED[name]
    args, expected = _inputs(layout, m, k, n, rng)
    run = nki_cpu.run_kernel(nki_cpu.load_kernel(MATMULS, name), *args, target="trn2")
    out = np.asarray(run.outputs).astype(np.float32)
    assert out.shape == expected.shape
    # bf16 output (and bf16 SBUF accumulation across K blocks): a few bf16 ulps of the largest value
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-2 * np.abs(expected).max())
    return run


@pytest.mark.parametrize("name", list(SMALL))
def test_kernel_matches_numpy_at_small_sizes(name, rng):
    m, k, n = SMALL[name]
    run = _run(name, m, k, n, rng)
    second = m * n * n if name.startswith("double") else 0      # (Q K^T) [M, N] @ V [N, N]
    assert run.trace.count_by_op()["nc_matmul"] == (m * k * n + second) // (128 * 128 * 512)
    assert all(ins.operands[0].buffer == "psum" for ins in run.trace.instructions if ins.op == "nc_matmul")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_kernel_at_2048_matches_numpy_and_the_published_instruction_counts(name, rng):
    run = _run(name, 2048, 2048, 2048, rng)
    _, counts = PUBLISHED[name]
    assert run.trace.count_by_op() == counts


def test_dma_overview_example1_is_one_32kib_load_then_exp_then_store(rng):
    a = rng.standard_normal((4, 4096), dtype=np.float32).astype(BF16)
    kernel = nki_cpu.load_kernel(KERNELS / "dma_examples.py", "dma_overview_example1")
    run = nki_cpu.run_kernel(kernel, a, target="trn2")
    load, act, store = run.trace.instructions
    assert (load.op, act.op, store.op) == ("dma_copy", "activation", "dma_copy")
    assert load.dma_bytes == 4 * 4096 * 2 and load.operands[0].buffer == "sbuf" and load.operands[1].buffer == "hbm"
    assert act.engine == "scalar" and act.attrs["act"] == "exp"
    np.testing.assert_allclose(np.asarray(run.outputs).astype(np.float32), np.exp(a.astype(np.float32)), rtol=2 ** -7)


def test_hand_9092_differs_from_manual_ir_8045_only_in_psum_tiles_per_block(rng):
    """The 90.92 and 80.45 kernels issue the same ops on the same shapes; 90.92 takes a fresh PSUM
    tile per 128x512 output tile, 80.45 one per four (per lhsT block)."""
    hand, manual = (_run(name, 512, 1024, 512, rng).trace for name in ("lhsT_rhs_hand_9092", "lhsT_rhs_manual_ir_8045"))

    def stream(trace):
        return [(i.op, i.engine, [(o.shape, o.dtype, o.buffer) for o in i.operands]) for i in trace.instructions]

    def psum_allocations(trace):
        return len({r.alloc for ins in trace.instructions for r in ins.writes if r.buffer == "psum"})

    assert stream(hand) == stream(manual)
    drains = hand.count_by_op()["tensor_tensor"]
    assert (psum_allocations(hand), psum_allocations(manual)) == (drains, drains // 4)
