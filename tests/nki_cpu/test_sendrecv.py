"""nisa.sendrecv between the program instances of a grid (LNC=2 cores exchanging SBUF tiles): the gang
of instances meets at each call, data moves both ways, the trace orders each instance's sendrecv after
everything the instances did before it, and the cost model sees the cross-core dependency."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from nki_cpu import cost


@nki.jit
def swap_kernel(a):
    """Instance k loads a[k], receives the other's tile, and writes other - own (twice round a ring)."""
    n = nl.num_programs(0)
    k = nl.program_id(0)
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    mine = nl.ndarray(a.shape[1:], dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=mine, src=a[k])
    theirs = nl.ndarray(a.shape[1:], dtype=a.dtype, buffer=nl.sbuf)
    nisa.sendrecv(src=mine, dst=theirs, send_to_rank=(k + 1) % n, recv_from_rank=(k - 1) % n, pipe_id=0)
    nisa.tensor_tensor(dst=theirs, data1=theirs, data2=mine, op=nl.subtract)
    back = nl.ndarray(a.shape[1:], dtype=a.dtype, buffer=nl.sbuf)
    nisa.sendrecv(src=theirs, dst=back, send_to_rank=(k - 1) % n, recv_from_rank=(k + 1) % n, pipe_id=1)
    nisa.dma_copy(dst=out[k], src=back)
    return out


@pytest.mark.parametrize("instances", [2, 4])
def test_instances_exchange_tiles_both_ways(instances):
    a = np.arange(instances * 4 * 8, dtype=np.float32).reshape(instances, 4, 8)
    out = swap_kernel[instances](a)
    for k in range(instances):
        # instance k gets back what instance k+1 computed: a[k] - a[k+1]
        np.testing.assert_array_equal(out[k], a[k] - a[(k + 1) % instances])


def test_trace_places_each_sendrecv_after_what_both_instances_did_before_it():
    run = nki_cpu.run_kernel(swap_kernel[2], np.zeros((2, 4, 8), np.float32))
    ops = [(i.op, i.program_id[0]) for i in run.trace.instructions]
    assert ops == [("dma_copy", 0), ("dma_copy", 1), ("sendrecv", 0), ("sendrecv", 1),
                   ("tensor_tensor", 0), ("tensor_tensor", 1), ("sendrecv", 0), ("sendrecv", 1),
                   ("dma_copy", 0), ("dma_copy", 1)]
    loads = run.trace.instructions[:2]
    first = run.trace.instructions[2:4]
    # instance 0 receives instance 1's tile: its sendrecv reads what instance 1's load wrote
    assert first[0].reads[0].alloc == loads[1].writes[0].alloc
    assert first[1].reads[0].alloc == loads[0].writes[0].alloc
    assert all(i.engine == "dma" and i.dma_bytes == 4 * 8 * 4 for i in first)
    assert first[0].attrs["send_to_rank"] == 1 and first[0].attrs["pipe_id"] == 0


def test_cost_model_sees_the_exchange_as_an_on_chip_dma_on_the_receiving_core():
    run = nki_cpu.run_kernel(swap_kernel[2], np.zeros((2, 4, 8), np.float32))
    est = cost.estimate(run.trace, target="trn2", lnc=2)
    assert est.schedule.cores_used == 2
    load0, load1, recv0, recv1 = est.instructions[:4]
    assert recv0.waited_for == load1.index and recv0.start >= load1.done
    assert {s.track for s in recv0.slices} == {"core0.dma0"} and {s.track for s in recv1.slices} == {"core1.dma0"}
    assert recv0.hbm_bytes == 0.0


def test_a_grid_without_sendrecv_runs_instance_after_instance():
    @nki.jit
    def independent(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray(a.shape[1:], dtype=a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a[nl.program_id(0)])
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0)
        nisa.dma_copy(dst=out[nl.program_id(0)], src=t)
        return out

    run = nki_cpu.run_kernel(independent[3], np.zeros((3, 2, 2), np.float32))
    assert [i.program_id[0] for i in run.trace.instructions] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(run.outputs, np.ones((3, 2, 2)))


def test_each_instance_has_its_own_sbuf():
    """Two instances each holding 60% of SBUF across a rendezvous fit: they are different cores."""
    @nki.jit
    def big(a):
        k = nl.program_id(0)
        out = nl.ndarray((2, 1, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        cols = int(nl.tile_size.total_available_sbuf_size * 0.6) // 4
        hold = nl.ndarray((1, cols), dtype=nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=hold[0:1, 0:4], value=float(k))
        got = nl.ndarray((1, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.sendrecv(src=hold[0:1, 0:4], dst=got, send_to_rank=1 - k, recv_from_rank=1 - k, pipe_id=0)
        nisa.dma_copy(dst=out[k], src=got)
        return out

    run = nki_cpu.run_kernel(big[2], np.zeros(1, np.float32))
    np.testing.assert_array_equal(run.outputs[:, 0, 0], [1.0, 0.0])
    assert run.trace.peak_sbuf_bytes < run.trace.sbuf_capacity_bytes


def test_instances_that_do_not_all_meet_are_an_error():
    @nki.jit
    def lopsided(a):
        k = nl.program_id(0)
        t = nl.ndarray((1, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=t, value=0.0)
        if k == 0:
            nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)

    with pytest.raises(nki_cpu.NkiUsageError, match=r"instances \[1\] ended while \[0\] wait at sendrecv"):
        nki_cpu.run_kernel(lopsided[2], np.zeros(1, np.float32))


@pytest.mark.parametrize("body,error,match", [
    ("shape", nki_cpu.NkiUsageError, "sizes and dtypes must match"),
    ("psum", nki_cpu.HardwareLimitError, "src and dst in SBUF"),
    ("self", nki_cpu.NkiUsageError, "must be another instance"),
])
def test_bad_exchanges_are_refused(body, error, match):
    @nki.jit
    def bad(a):
        k = nl.program_id(0)
        buffer = nl.psum if body == "psum" else nl.sbuf
        t = nl.ndarray((1, 4 + (k if body == "shape" else 0)), dtype=nl.float32, buffer=buffer)
        r = nl.ndarray((1, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.sendrecv(src=t, dst=r, send_to_rank=k if body == "self" else 1 - k, recv_from_rank=1 - k, pipe_id=0)

    with pytest.raises(error, match=match):
        nki_cpu.run_kernel(bad[2], np.zeros(1, np.float32))


def test_sendrecv_needs_a_grid():
    @nki.jit
    def alone(a):
        t = nl.ndarray((1, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)

    with pytest.raises(nki_cpu.NkiUsageError, match="one instance"):
        nki_cpu.run_kernel(alone, np.zeros(1, np.float32))
