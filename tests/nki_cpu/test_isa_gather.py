"""GpSimd gathers (local_gather, nc_n_gather), cumulative scans and trn3's exponential."""

import numpy as np

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import load, store


@nki.jit
def local_gather_kernel(src, index, width, valid):
    s, i = load(src), load(index)
    out = nl.ndarray((src.shape[0], valid * width), dtype=src.dtype, buffer=nl.sbuf)
    nisa.local_gather(dst=out, src_buffer=s, index=i, num_elem_per_idx=width, num_valid_indices=valid)
    return store(out)


def test_local_gather_matches_per_core_group_semantics(rng):
    src = rng.standard_normal((32, 40)).astype(np.float32)
    index = rng.integers(0, 38, size=(32, 2)).astype(np.uint16)
    out = local_gather_kernel(src, index, 2, 20)
    for start in (0, 16):
        group = slice(start, start + 16)
        offsets = index[group].flatten(order="F")[:20]
        positions = (offsets[:, None] + np.arange(2)[None, :]).reshape(-1)
        np.testing.assert_array_equal(out[group], src[group][:, positions])


@nki.jit
def n_gather_kernel(data, indices):
    d, i = load(data), load(indices)
    out = nl.ndarray(indices.shape, dtype=data.dtype, buffer=nl.sbuf)
    nisa.nc_n_gather(dst=out, data=d, indices=i)
    return store(out)


def test_nc_n_gather_gathers_within_each_partition(rng):
    data = rng.standard_normal((8, 4, 6)).astype(np.float32)
    indices = rng.integers(0, 24, size=(8, 10)).astype(np.uint32)
    np.testing.assert_array_equal(n_gather_kernel(data, indices),
                                  np.take_along_axis(data.reshape(8, 24), indices.astype(np.int64), axis=1))


@nki.jit
def cumulative_kernel(a):
    x = load(a)
    running = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar_cumulative(dst=running, src=x, op0=nl.multiply, op1=nl.add, imm0=2.0)
    best = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar_cumulative(dst=best, src=x, op0=nl.add, op1=nl.maximum, imm0=0.0)
    return store(running), store(best)


def test_tensor_scalar_cumulative_scans(rng):
    a = rng.standard_normal((16, 12)).astype(np.float32)
    running, best = cumulative_kernel(a)
    np.testing.assert_allclose(running, np.cumsum(2 * a, axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(best, np.maximum.accumulate(a, axis=1))


@nki.jit
def exponential_kernel(a, shift):
    x, m = load(a), load(shift)
    y = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    total = nl.ndarray((a.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.exponential(dst=y, src=x, max_value=m, reduce_res=total, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    return store(y), store(total)


def test_trn3_exponential_subtracts_max_and_sums(rng):
    a = rng.standard_normal((8, 32)).astype(np.float32)
    shift = a.max(axis=1, keepdims=True)
    y, total = nki_cpu.run_kernel(exponential_kernel, a, shift, target="trn3").outputs
    np.testing.assert_allclose(y, np.exp(a - shift), rtol=1e-6)
    np.testing.assert_allclose(total[:, 0], np.exp(a - shift).sum(axis=1), rtol=1e-5)
