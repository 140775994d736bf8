"""Fixture kernels (tests/nki_cpu/kernels, plain NKI Beta 2 code) against torch at realistic shapes.

Tolerances use nki-library's "max" comparison, |a - b| <= tol * max|golden|: fp32 kernels must
match to fp32 accumulation-order noise; bf16 kernels to a few bf16 ulps (2^-8 relative).
"""

import os

import numpy as np
import pytest
import torch

import nki_cpu
from interp_helpers import BF16, KERNELS_DIR, max_rel_error

TOLERANCE = {"float32": 1e-5, "bfloat16": 1.6e-2}
DTYPES = {"float32": np.float32, "bfloat16": BF16}


def _kernel(module: str, name: str):
    return nki_cpu.load_kernel(os.path.join(KERNELS_DIR, f"{module}.py"), name)


def _torch(array):
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tensor_add(dtype, rng):
    a = rng.standard_normal((200, 1024)).astype(DTYPES[dtype])
    b = rng.standard_normal((200, 1024)).astype(DTYPES[dtype])
    out = _kernel("tensor_add", "tensor_add_kernel")(a, b)
    expected = (_torch(a) + _torch(b)).numpy()
    assert out.dtype == a.dtype
    assert max_rel_error(out, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_tiled_512x2048x512(dtype, rng):
    a = rng.standard_normal((512, 2048)).astype(DTYPES[dtype])
    b = rng.standard_normal((2048, 512)).astype(DTYPES[dtype])
    run = nki_cpu.run_kernel(_kernel("matmul_tiled", "matmul_tiled_kernel"), np.ascontiguousarray(a.T), b)
    expected = (_torch(a) @ _torch(b)).numpy()
    assert max_rel_error(run.outputs, expected) <= TOLERANCE[dtype]
    assert run.trace.total_macs == 512 * 2048 * 512
    assert run.trace.count_by_op()["nc_matmul"] == 4 * 16


@pytest.mark.parametrize("dtype, rows", [("float32", 256), ("bfloat16", 128), ("bfloat16", 200)])
def test_rmsnorm(dtype, rows, rng):
    x = rng.standard_normal((rows, 2048)).astype(DTYPES[dtype])
    w = rng.uniform(0.5, 1.5, 2048).astype(DTYPES[dtype])
    out = _kernel("rmsnorm", "rmsnorm_kernel")(x, w, 1e-6)
    xt = _torch(x)
    expected = (xt * torch.rsqrt(xt.pow(2).mean(-1, keepdim=True) + 1e-6) * _torch(w)).numpy()
    assert max_rel_error(out, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_softmax(dtype, rng):
    x = (3 * rng.standard_normal((128, 2048))).astype(DTYPES[dtype])
    out = _kernel("softmax", "softmax_kernel")(x)
    expected = torch.softmax(_torch(x), dim=-1).numpy()
    assert max_rel_error(out, expected) <= TOLERANCE[dtype]
    np.testing.assert_allclose(np.asarray(out, np.float32).sum(axis=1), 1.0, rtol=TOLERANCE[dtype] * 2)


@pytest.mark.parametrize("dtype, k", [("float32", 8), ("float32", 16), ("bfloat16", 16)])
def test_topk(dtype, k, rng):
    x = rng.permutation(128 * 1024).reshape(128, 1024).astype(np.float32).astype(DTYPES[dtype])
    values, indices = _kernel("topk", "topk_kernel")(x, k)
    expected = torch.topk(_torch(x), k, dim=-1)
    np.testing.assert_array_equal(values, expected.values.numpy())
    # bf16 rounding can tie distinct integers; compare the values the indices point at.
    np.testing.assert_array_equal(np.take_along_axis(np.asarray(x, np.float32), indices.astype(np.int64), 1),
                                  expected.values.numpy())
    if dtype == "float32":
        np.testing.assert_array_equal(indices, expected.indices.numpy())


def test_fixture_kernels_trace_engines(rng):
    x = rng.standard_normal((128, 512)).astype(np.float32)
    trace = nki_cpu.run_kernel(_kernel("rmsnorm", "rmsnorm_kernel"), x, np.ones(512, np.float32), 1e-6).trace
    assert trace.count_by_engine() == {"dma": 3, "scalar": 2, "vector": 3}
    assert trace.peak_sbuf_bytes > 0 and trace.peak_psum_bytes == 0
