"""Record once, replay later (nki_cpu.replay): a data-independent kernel's later launches with the same key skip the
kernel body and still give the interpreter's outputs and trace; the switch and the bound of the cache."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from nki_cpu import replay

BODY_RUNS = []


@nki.jit
def scaled_sum(x, y, factor):
    BODY_RUNS.append(1)
    a = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    b = nl.ndarray(y.shape, dtype=y.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=x)
    nisa.dma_copy(dst=b, src=y)
    total = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=total, data1=a, data2=b, op=nl.add)
    nisa.tensor_scalar(dst=total, data=total, op0=nl.multiply, operand0=factor)
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=total)
    return out


def test_same_key_replays_without_the_body_and_matches_interpretation(rng):
    BODY_RUNS.clear()
    x, y = (rng.standard_normal((8, 16)).astype(np.float32) for _ in range(2))
    first = nki_cpu.run_kernel(scaled_sum, x, y, 2.0)
    keep = first.outputs.copy()
    again = nki_cpu.run_kernel(scaled_sum, y, x * 3, 2.0)          # other data, same key: a replay
    assert len(BODY_RUNS) == 1
    np.testing.assert_array_equal(first.outputs, keep)              # the first call's output is not overwritten
    with replay.enabled(False):
        reference = nki_cpu.run_kernel(scaled_sum, y, x * 3, 2.0)
    np.testing.assert_array_equal(again.outputs, reference.outputs)
    assert again.trace.to_json() == reference.trace.to_json()
    assert len(BODY_RUNS) == 2


def test_scalar_arguments_shapes_and_dtypes_are_part_of_the_key(rng):
    BODY_RUNS.clear()
    x = rng.standard_normal((8, 16)).astype(np.float32)
    np.testing.assert_array_equal(nki_cpu.run_kernel(scaled_sum, x, x, 2.0).outputs, (x + x) * 2)
    np.testing.assert_array_equal(nki_cpu.run_kernel(scaled_sum, x, x, 3.0).outputs, (x + x) * 3)
    small = x[:4].copy()
    np.testing.assert_array_equal(nki_cpu.run_kernel(scaled_sum, small, small, 3.0).outputs, (small + small) * 3)
    assert len(BODY_RUNS) == 3 and replay.cached_keys() == 3


def test_switched_off_nothing_is_recorded(rng):
    x = rng.standard_normal((8, 16)).astype(np.float32)
    with replay.enabled(False):
        BODY_RUNS.clear()
        for _ in range(2):
            nki_cpu.run_kernel(scaled_sum, x, x, 2.0)
        assert len(BODY_RUNS) == 2 and replay.cached_keys() == 0


def test_the_cache_is_bounded_least_recently_used_first(rng, monkeypatch):
    monkeypatch.setitem(replay._state, "size", 2)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    for factor in (1.0, 2.0, 3.0):
        nki_cpu.run_kernel(scaled_sum, x, x, factor)
    assert replay.cached_keys() == 2
    BODY_RUNS.clear()
    nki_cpu.run_kernel(scaled_sum, x, x, 1.0)           # evicted: interpreted again
    nki_cpu.run_kernel(scaled_sum, x, x, 3.0)           # kept: replayed
    assert len(BODY_RUNS) == 1


def test_the_cache_is_bounded_by_the_memory_its_recordings_hold(rng, monkeypatch):
    x = rng.standard_normal((8, 16)).astype(np.float32)
    nki_cpu.run_kernel(scaled_sum, x, x, 1.0)
    one = replay.lookup(next(iter(replay._cache))).nbytes
    assert one >= 3 * x.nbytes                          # a, b, total and out
    monkeypatch.setitem(replay._state, "bytes", 2 * one)
    for factor in (2.0, 3.0, 4.0):
        nki_cpu.run_kernel(scaled_sum, x, x, factor)
    assert replay.cached_keys() == 2


@pytest.mark.parametrize("instances", [2])
def test_a_grid_with_a_rendezvous_replays_in_program_order(rng, instances):
    @nki.jit
    def swap_halves(x):
        BODY_RUNS.append(1)
        rank = nl.program_id(0)
        mine = nl.ndarray((x.shape[1], x.shape[2]), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=mine, src=x[rank])
        theirs = nl.ndarray(mine.shape, dtype=x.dtype, buffer=nl.sbuf)
        other = 1 - rank
        nisa.sendrecv(src=mine, dst=theirs, send_to_rank=other, recv_from_rank=other)
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out[rank], src=theirs)
        return out

    BODY_RUNS.clear()
    for _ in range(2):
        x = rng.standard_normal((instances, 4, 8)).astype(np.float32)
        run = nki_cpu.run_kernel(swap_halves[instances], x)
        np.testing.assert_array_equal(run.outputs, x[::-1])
    assert len(BODY_RUNS) == instances          # the second launch replayed both instances' tapes
