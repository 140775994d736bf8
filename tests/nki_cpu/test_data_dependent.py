"""Kernels whose instruction stream or addresses depend on their input data are checked and traced on every call:
the same kernel at the same shapes, called again with other data, reads other rows, traces other regions and
instruction counts, and fails a bounds check as soon as the data leaves the tensor. Addresses read from the data
(scalar and vector offsets) are read again by a replay (nki_cpu.replay); control flow read from the data is
interpreted again."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import BF16


@nki.jit
def expert_rows(weights, expert):
    """A scalar_offset DMA: which expert's rows move depends on `expert`."""
    e = nl.ndarray((1, 1), dtype=nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=e, src=expert)
    _, rows, cols = weights.shape
    tile = nl.ndarray((rows, cols), dtype=weights.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=weights.ap(pattern=[[cols, rows], [1, cols]], offset=0, scalar_offset=e,
                                           indirect_dim=0))
    out = nl.ndarray((rows, cols), dtype=weights.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=tile)
    return out


@nki.jit
def gather_rows(table, idx, oob=nisa.oob_mode.error):
    """A vector_offset gather: the rows, their bounds check (oob_mode=error) or the rows skipped (skip) depend on
    `idx`."""
    ids = nl.ndarray(idx.shape, dtype=idx.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids, src=idx)
    rows = nl.ndarray((idx.shape[0], table.shape[1]), dtype=table.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=rows, src=table.ap(pattern=[[table.shape[1], idx.shape[0]], [1, table.shape[1]]], offset=0,
                                         vector_offset=ids, indirect_dim=0), oob_mode=oob)
    out = nl.ndarray(rows.shape, dtype=rows.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=rows)
    return out


SCATTER_RUNS = []


@nki.jit
def scatter_add_rows(table, rows, idx):
    """A vector_offset scatter with dst_rmw_op=add and oob_mode=skip: rows with an index outside `table` are
    dropped; which rows of `table` change, and how many bytes move, depend on `idx`."""
    SCATTER_RUNS.append(1)
    out = nl.ndarray(table.shape, dtype=table.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=table)
    ids = nl.ndarray(idx.shape, dtype=idx.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ids, src=idx)
    tile = nl.ndarray(rows.shape, dtype=rows.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=rows)
    width = table.shape[1]
    nisa.dma_copy(dst=out.ap(pattern=[[width, rows.shape[0]], [1, width]], offset=0, vector_offset=ids,
                             indirect_dim=0), src=tile, dst_rmw_op=nl.add, oob_mode=nisa.oob_mode.skip)
    return out


@nki.jit
def repeated_add(x, count):
    """A dynamic loop: its trip count is read from the data into a register."""
    n = nl.ndarray((1, 1), dtype=nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=n, src=count)
    trips = nisa.register_alloc()
    nisa.register_load(trips, n)
    tile = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=x)
    acc = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.memset(dst=acc, value=0.0)
    for _ in nl.dynamic_range(trips):
        nisa.tensor_tensor(dst=acc, data1=acc, data2=tile, op=nl.add)
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=acc)
    return out


def test_scalar_offset_is_resolved_traced_and_checked_on_every_call(rng):
    weights = rng.standard_normal((5, 8, 3)).astype(BF16)
    expert_bytes = 8 * 3 * 2
    runs = {e: nki_cpu.run_kernel(expert_rows, weights, np.array([[e]], np.int32)) for e in (3, 1)}
    for e, run in runs.items():
        np.testing.assert_array_equal(run.outputs, weights[e])
        assert run.trace.instructions[1].reads[0].byte_range == (e * expert_bytes, (e + 1) * expert_bytes)
    with pytest.raises(nki_cpu.HardwareLimitError, match="scalar_offset must stay inside"):
        nki_cpu.run_kernel(expert_rows, weights, np.array([[5]], np.int32))
    again = nki_cpu.run_kernel(expert_rows, weights, np.array([[3]], np.int32))
    assert again.trace.to_json() == runs[3].trace.to_json()


def test_vector_offset_gather_is_checked_on_every_call(rng):
    table = rng.standard_normal((10, 16)).astype(np.float32)
    good = np.array([[3], [0]], np.int32)
    first = nki_cpu.run_kernel(gather_rows, table, good)
    np.testing.assert_array_equal(first.outputs, table[[3, 0]])
    with pytest.raises(nki_cpu.HardwareLimitError, match="oob_mode=error"):
        gather_rows(table, np.array([[3], [10]], np.int32))
    other = nki_cpu.run_kernel(gather_rows, table, np.array([[9], [8]], np.int32))
    np.testing.assert_array_equal(other.outputs, table[[9, 8]])
    assert other.trace.instructions[1].reads[0].byte_range == (8 * 16 * 4, 10 * 16 * 4)
    assert first.trace.instructions[1].reads[0].byte_range == (0, 4 * 16 * 4)


def test_a_skipping_gather_replays_with_the_bytes_its_new_index_moves(rng):
    table = rng.standard_normal((10, 16)).astype(np.float32)
    first = nki_cpu.run_kernel(gather_rows, table, np.array([[3], [0]], np.int32), nisa.oob_mode.skip)
    replayed = nki_cpu.run_kernel(gather_rows, table, np.array([[30], [4]], np.int32), nisa.oob_mode.skip)
    assert nki_cpu.replay.cached_keys() == 1
    np.testing.assert_array_equal(replayed.outputs[1], table[4])
    assert (first.trace.instructions[1].dma_bytes, replayed.trace.instructions[1].dma_bytes) == (2 * 64, 64)
    assert replayed.trace.instructions[1].reads[0].byte_range == (4 * 64, 5 * 64)


def test_a_vector_offset_scatter_replays_with_the_rows_its_new_index_names(rng):
    table = rng.standard_normal((10, 8)).astype(np.float32)
    rows = rng.standard_normal((3, 8)).astype(np.float32)
    SCATTER_RUNS.clear()
    runs = {}
    for ids in ((2, 5, 7), (9, 0, 12)):      # 12 is outside the table: skipped
        runs[ids] = nki_cpu.run_kernel(scatter_add_rows, table, rows, np.array([[i] for i in ids], np.int32))
        expected = table.copy()
        for row, i in enumerate(ids):
            if i < len(table):
                expected[i] += rows[row]
        np.testing.assert_array_equal(runs[ids].outputs, expected)
    assert len(SCATTER_RUNS) == 1       # the second call was a replay
    first, second = (run.trace.instructions[3] for run in runs.values())
    assert first.writes[0].byte_range == (2 * 32, 8 * 32) and second.writes[0].byte_range == (0, 10 * 32)
    assert first.dma_bytes == second.dma_bytes == 3 * 32    # a scatter counts every source row
    assert first.reads[-1] == first.writes[0] and second.reads[-1] == second.writes[0]    # read-modify-write


def test_dynamic_loop_runs_and_traces_as_many_trips_as_the_data_says(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    for trips in (2, 5, 0):
        run = nki_cpu.run_kernel(repeated_add, x, np.array([[trips]], np.int32))
        assert run.trace.count_by_op().get("tensor_tensor", 0) == trips
        expected = np.zeros_like(x)
        for _ in range(trips):
            expected = expected + x
        np.testing.assert_array_equal(run.outputs, expected)


BODY_RUNS = []


@nki.jit
def sign_branch(x):
    """Control flow decided by a tensor value read into Python (.np()): the kernel becomes data-dependent."""
    BODY_RUNS.append(1)
    tile = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=x)
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    if tile.np()[0, 0] > 0:
        nisa.dma_copy(dst=out, src=tile)
    else:
        doubled = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=doubled, data1=tile, data2=tile, op=nl.add)
        nisa.dma_copy(dst=out, src=doubled)
    return out


def test_a_kernel_that_reads_data_for_control_flow_is_interpreted_on_every_call(rng):
    x = np.abs(rng.standard_normal((4, 8))).astype(np.float32) + 1
    BODY_RUNS.clear()
    first = nki_cpu.run_kernel(sign_branch, x)
    second = nki_cpu.run_kernel(sign_branch, -x)
    assert len(BODY_RUNS) == 2 and nki_cpu.replay.cached_keys() == 0
    np.testing.assert_array_equal(first.outputs, x)
    np.testing.assert_array_equal(second.outputs, -2 * x)
    assert first.trace.count_by_op() != second.trace.count_by_op()


def test_a_dynamic_loop_is_never_recorded(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    nki_cpu.run_kernel(repeated_add, x, np.array([[2]], np.int32))
    assert nki_cpu.replay.cached_keys() == 0
