"""TensorE: nc_matmul numerics and PSUM accumulation rules; transposes on every path."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import BF16, load


def _evict(psum_tile, dtype=nl.float32):
    sb = nl.ndarray(psum_tile.shape, dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=sb, src=psum_tile)
    out = nl.ndarray(psum_tile.shape, dtype=dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=sb)
    return out


@nki.jit
def accumulate_kernel(a, b, mode):
    """Three matmuls of the same operands into one PSUM tile, under an accumulate mode."""
    st, mv = load(a), load(b)
    acc = nl.ndarray((a.shape[1], b.shape[1]), dtype=nl.float32, buffer=nl.psum)
    if mode == "default":
        for _ in range(3):
            nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
    elif mode == "false_last":
        nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
        nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
        nisa.nc_matmul(dst=acc, stationary=st, moving=mv, accumulate=False)
    elif mode == "true_after_memset":
        nisa.memset(dst=acc, value=1.0)
        nisa.nc_matmul(dst=acc, stationary=st, moving=mv, accumulate=True)
    elif mode == "partial":
        # First write covers only columns 0:4; the second matmul covers 0:8, so columns 4:8
        # are a first write there (overwrite) while 0:4 accumulate: tracked per PSUM element.
        nisa.nc_matmul(dst=acc[:, 0:4], stationary=st, moving=mv[:, 0:4])
        nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
    return _evict(acc)


@pytest.mark.parametrize("mode, factor", [("default", 3), ("false_last", 1), ("true_after_memset", None)])
def test_psum_accumulation_rules(mode, factor, rng):
    a = rng.standard_normal((64, 32)).astype(np.float32)
    b = rng.standard_normal((64, 8)).astype(np.float32)
    product = a.T @ b
    out = accumulate_kernel(a, b, mode)
    expected = product + 1.0 if factor is None else product * factor
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_first_write_rule_is_per_psum_element(rng):
    a = rng.standard_normal((64, 32)).astype(np.float32)
    b = rng.standard_normal((64, 8)).astype(np.float32)
    out = accumulate_kernel(a, b, "partial")
    product = a.T @ b
    np.testing.assert_allclose(out[:, 0:4], 2 * product[:, 0:4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[:, 4:8], product[:, 4:8], rtol=1e-5, atol=1e-5)


def test_matmul_bf16_inputs_accumulate_in_fp32_and_trace_macs(rng):
    a = rng.standard_normal((128, 128)).astype(BF16)
    b = rng.standard_normal((128, 512)).astype(BF16)
    run = nki_cpu.run_kernel(accumulate_kernel, a, b, "false_last")
    expected = a.astype(np.float32).T @ b.astype(np.float32)
    np.testing.assert_allclose(run.outputs, expected, rtol=1e-5, atol=1e-4)
    matmuls = [i for i in run.trace.instructions if i.op == "nc_matmul"]
    assert [i.engine for i in matmuls] == ["tensor"] * 3
    assert all(i.macs == 128 * 128 * 512 for i in matmuls)
    assert [i.attrs["accumulated"] for i in matmuls] == [False, True, False]
    # The accumulating matmul reads its PSUM destination (a dependency edge); the others do not.
    assert [len(i.reads) for i in matmuls] == [2, 3, 2]


@nki.jit
def bf16_psum_kernel(a, b):
    st, mv = load(a), load(b)
    acc = nl.ndarray((a.shape[1], b.shape[1]), dtype=nl.bfloat16, buffer=nl.psum)
    nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
    nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
    return _evict(acc, nl.bfloat16)


def test_trn3_bf16_psum_rounds_after_each_accumulation(rng):
    a = rng.standard_normal((32, 16)).astype(BF16)
    b = rng.standard_normal((32, 16)).astype(BF16)
    out = nki_cpu.run_kernel(bf16_psum_kernel, a, b, target="trn3").outputs
    once = (a.astype(np.float32).T @ b.astype(np.float32)).astype(BF16).astype(np.float32)
    np.testing.assert_array_equal(out.astype(np.float32), (once + once).astype(BF16).astype(np.float32))


@nki.jit
def transpose_kernel(a, path):
    x = load(a)
    parts, free = a.shape
    if path == "pe":
        t = nl.ndarray((free, parts), dtype=a.dtype, buffer=nl.psum)
        nisa.nc_transpose(dst=t, data=x)
    elif path == "vector":
        t = nl.ndarray((free, parts), dtype=a.dtype, buffer=nl.sbuf)
        nisa.nc_transpose(dst=t, data=x, engine=nisa.vector_engine)
    else:
        identity = nl.ndarray((parts, parts), dtype=a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=identity, src=nl.shared_identity_matrix(parts, dtype=a.dtype))
        t = nl.ndarray((free, parts), dtype=a.dtype, buffer=nl.psum)
        nisa.nc_matmul(dst=t, stationary=x, moving=identity, is_transpose=True)
    return _evict(t, a.dtype)


@pytest.mark.parametrize("path, shape", [("pe", (128, 96)), ("vector", (32, 16)), ("matmul", (64, 128))])
def test_transposes_are_bit_exact(path, shape, rng):
    a = rng.standard_normal(shape).astype(BF16)
    a[0, 0] = np.inf          # a real matmul would turn inf * 0 into NaN; a transpose must not
    run = nki_cpu.run_kernel(transpose_kernel, a, path)
    np.testing.assert_array_equal(run.outputs, a.T)
    op = "nc_matmul" if path == "matmul" else "nc_transpose"
    engine = "vector" if path == "vector" else "tensor"
    assert any(i.op == op and i.engine == engine for i in run.trace.instructions)


@nki.jit
def three_d_kernel(a, b):
    st = nl.ndarray((a.shape[0], 2, a.shape[1] // 2), dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=st, src=a)
    mv = load(b)
    acc = nl.ndarray((a.shape[1], b.shape[1]), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=acc, stationary=st, moving=mv)
    return _evict(acc)


def test_matmul_flattens_3d_free_dims(rng):
    a = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal((16, 4)).astype(np.float32)
    np.testing.assert_allclose(three_d_kernel(a, b), a.T @ b, rtol=1e-5)
