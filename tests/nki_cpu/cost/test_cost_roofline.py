"""Roofline sanity: a streaming kernel is never faster than its bytes over HBM bandwidth, a matmul
never faster than TensorE peak; and the roofline helper for ops that are not NKI kernels."""

import numpy as np
import pytest

import nki_cpu
from cost_kernels import BF16, load_test_kernel, random, stream_copy_kernel
from nki_cpu import cost

# hardware-and-model.md §1/§2: chip HBM 2.9 / 4.9 TB/s, shared by 8 / lnc logical cores.
HBM_BYTES_PER_NS = {"trn2": 2900.0, "trn3": 4900.0}
BF16_MACS_PER_NS = 128 * 128 * 2.4     # one physical core's TensorE


def hbm_per_logical_core(target, lnc):
    return HBM_BYTES_PER_NS[target] * lnc / 8


@pytest.mark.parametrize("target", ["trn2", "trn3"])
@pytest.mark.parametrize("lnc", [1, 2])
@pytest.mark.parametrize("shape, dtype", [((128, 512), np.float32), ((512, 2048), BF16), ((384, 4096), BF16)])
def test_streaming_kernel_never_beats_hbm(target, lnc, shape, dtype):
    add = load_test_kernel("tensor_add.py", "tensor_add_kernel")
    run = nki_cpu.run_kernel(add, random(shape, dtype), random(shape, dtype, 1), target=target)
    est = cost.estimate(run.trace, lnc=lnc)
    itemsize = np.dtype(dtype).itemsize
    assert est.hbm_bytes == 3 * shape[0] * shape[1] * itemsize
    assert est.time_ns >= est.hbm_bytes / hbm_per_logical_core(target, lnc)
    assert est.time_ns >= est.floor_ns


@pytest.mark.parametrize("target, lnc, grid", [("trn2", 2, 2), ("trn2", 1, 1), ("trn3", 2, 2)])
def test_parallel_queues_share_hbm_bandwidth(target, lnc, grid):
    """A large copy on every DMA queue of the logical core: HBM bandwidth is the limit, and the estimate
    lands at it plus descriptor and latency overheads."""
    run = nki_cpu.run_kernel(stream_copy_kernel, random((4096, 2048), BF16), target=target, grid=(grid,))
    est = cost.estimate(run.trace, lnc=lnc)
    floor = est.hbm_bytes / hbm_per_logical_core(target, lnc)
    assert floor <= est.time_ns <= 1.5 * floor


@pytest.mark.parametrize("target", ["trn2", "trn3"])
@pytest.mark.parametrize("dtype, slowdown", [(BF16, 1), (np.float32, 4)])
def test_matmul_never_beats_tensore_peak(target, dtype, slowdown):
    matmul = load_test_kernel("matmul_tiled.py", "matmul_tiled_kernel")
    run = nki_cpu.run_kernel(matmul, random((256, 256), dtype), random((256, 1024), dtype, 1), target=target)
    est = cost.estimate(run.trace, lnc=1)
    matmuls = [p for p in est.instructions if p.op == "nc_matmul"]
    assert len(matmuls) == 2 * 2 * 2
    for placed, ins in zip(matmuls, [i for i in run.trace.instructions if i.op == "nc_matmul"]):
        assert placed.end - placed.start >= ins.macs / (BF16_MACS_PER_NS / slowdown) - 1e-9
    assert est.time_ns >= est.macs / (BF16_MACS_PER_NS / slowdown)
    assert est.compute_floor_ns == pytest.approx(est.macs / (BF16_MACS_PER_NS / slowdown))


def test_roofline_op_memory_and_compute_bound():
    memory = cost.roofline_op(flops=1e6, hbm_bytes=7.25e6, target="trn2", lnc=2, overhead_ns=0)
    assert memory.bound == "memory" and memory.time_ns == pytest.approx(7.25e6 / 725)
    compute = cost.roofline_op(flops=2 * BF16_MACS_PER_NS * 2 * 1e4, hbm_bytes=1e3, target="trn3", lnc=2,
                               overhead_ns=0)
    assert compute.bound == "compute" and compute.time_ns == pytest.approx(1e4)
    fp32 = cost.roofline_op(flops=compute.flops, hbm_bytes=1e3, target="trn3", lnc=2, dtype="float32", overhead_ns=0)
    assert fp32.time_ns == pytest.approx(4 * compute.time_ns)
    default = cost.roofline_op(flops=0, hbm_bytes=0, target="trn2")
    assert default.time_ns == pytest.approx(2 * 1300)          # two DMA fixed latencies


def test_roofline_point_of_an_estimate():
    run = nki_cpu.run_kernel(stream_copy_kernel, random((256, 512), BF16))
    est = cost.estimate(run.trace)
    point = est.roofline_point("copy")
    assert (point.flops, point.hbm_bytes, point.time_ns) == (0, est.hbm_bytes, est.time_ns)
    assert point.intensity == 0
