"""DMA: access patterns, dtype conversion, indirect gather/scatter, transposes, dma_compute."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import BF16


def _store(tile):
    out = nl.ndarray(tile.shape, dtype=tile.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=tile)
    return out


@nki.jit
def pattern_kernel(a):
    rows, cols = a.shape
    # Column-major read: partition p takes column p; free index walks the rows.
    t = nl.ndarray((cols, rows), dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a.ap(pattern=[[1, cols], [cols, rows]], offset=0))
    # Every other row, last 4 columns, converted to bf16 on the way.
    half = nl.ndarray((rows // 2, 4), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=half, src=a[0:rows:2, cols - 4:cols])
    return _store(t), _store(half)


def test_dma_access_patterns_and_conversion(rng):
    a = rng.standard_normal((8, 6)).astype(np.float32)
    t, half = pattern_kernel(a)
    np.testing.assert_array_equal(t, a.T)
    np.testing.assert_array_equal(half, a[0::2, 2:].astype(BF16))


@nki.jit
def gather_kernel(table, idx, oob):
    ids = nl.ndarray(idx.shape, dtype=idx.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids, src=idx)
    rows = nl.ndarray((idx.shape[0], table.shape[1]), dtype=table.dtype, buffer=nl.sbuf)
    nisa.memset(dst=rows, value=-7.0)
    nisa.dma_copy(dst=rows, src=table.ap(pattern=[[table.shape[1], idx.shape[0]], [1, table.shape[1]]], offset=0,
                                         vector_offset=ids, indirect_dim=0), oob_mode=oob)
    return _store(rows)


def test_indirect_vector_offset_gather(rng):
    table = rng.standard_normal((10, 16)).astype(np.float32)
    idx = np.array([[3], [0], [9], [3]], np.int32)
    run = nki_cpu.run_kernel(gather_kernel, table, idx, nisa.oob_mode.error)
    np.testing.assert_array_equal(run.outputs, table[idx[:, 0]])
    gather = [i for i in run.trace.instructions if i.op == "dma_copy"][1]
    assert [o.role for o in gather.operands] == ["dst", "src", "index"]
    assert gather.operands[1].indirect and gather.dma_bytes == 4 * 16 * 4
    assert gather.reads[0].byte_range == (0, 10 * 16 * 4)     # rows 0..9 span the whole table


def test_indirect_gather_skips_out_of_range_rows(rng):
    table = rng.standard_normal((10, 16)).astype(np.float32)
    idx = np.array([[2], [-1], [10], [5]], np.int32)
    out = gather_kernel(table, idx, nisa.oob_mode.skip)
    np.testing.assert_array_equal(out[[0, 3]], table[[2, 5]])
    assert (out[[1, 2]] == -7.0).all()
    with pytest.raises(nki_cpu.HardwareLimitError, match="oob_mode=error"):
        gather_kernel(table, idx, nisa.oob_mode.error)


@nki.jit
def scatter_kernel(table, idx, rows):
    ids = nl.ndarray(idx.shape, dtype=idx.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids, src=idx)
    values = nl.ndarray(rows.shape, dtype=rows.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=values, src=rows)
    target = table.ap(pattern=[[table.shape[1], idx.shape[0]], [1, table.shape[1]]], offset=0,
                      vector_offset=ids, indirect_dim=0)
    nisa.dma_compute(dst=target, srcs=[target, values], reduce_op=nl.add)
    return table


def test_dma_compute_scatter_add_updates_the_input_in_place(rng):
    table = rng.standard_normal((6, 4)).astype(np.float32)
    before = table.copy()
    idx = np.array([[4], [1]], np.int32)
    rows = rng.standard_normal((2, 4)).astype(np.float32)
    out = scatter_kernel(table, idx, rows)
    assert out is table
    expected = before.copy()
    expected[[4, 1]] += rows
    np.testing.assert_allclose(table, expected, rtol=1e-6)


@nki.jit
def scalar_offset_kernel(weights, expert):
    e = nl.ndarray((1, 1), dtype=nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=e, src=expert)
    _, rows, cols = weights.shape
    tile = nl.ndarray((rows, cols), dtype=weights.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=weights.ap(pattern=[[cols, rows], [1, cols]], offset=0, scalar_offset=e,
                                           indirect_dim=0))
    return _store(tile)


def test_scalar_offset_selects_an_expert(rng):
    weights = rng.standard_normal((5, 8, 3)).astype(BF16)
    out = scalar_offset_kernel(weights, np.array([[3]], np.int32))
    np.testing.assert_array_equal(out, weights[3])


@nki.jit
def dma_transpose_kernel(a):
    t = nl.ndarray((a.shape[1], a.shape[0]), dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_transpose(dst=t, src=a)
    return _store(t)


def test_dma_transpose(rng):
    a = rng.standard_normal((16, 96)).astype(BF16)
    np.testing.assert_array_equal(dma_transpose_kernel(a), a.T)


@nki.jit
def dma_sum_kernel(a, b, c):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    nisa.dma_compute(out, (a, b, c), scales=(1.0, 1.0, 1.0), reduce_op=nl.add)
    return out


def test_dma_compute_sums_sources(rng):
    a, b, c = (rng.standard_normal((4, 8)).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(dma_sum_kernel(a, b, c), a + b + c, rtol=1e-6)
