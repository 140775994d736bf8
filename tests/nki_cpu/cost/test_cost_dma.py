"""DMA costs: one transfer's time from its bytes, queues, descriptors and fixed latency; the queue
policy; small-transfer and strided-access penalties; the HBM bandwidth share of a queue."""

import pytest

import nki_cpu
from cost_kernels import BF16, copy_through_sbuf_kernel, instruction, operand, random, region
from nki_cpu import cost
from nki_cpu.cost.dma import part_ns, plan_dma

# Primary numbers (DMA-OV, DMA-BW): raw and table rate per engine (B/ns), 8 KiB calibration runs,
# 1300 ns fixed latency, 8 partitions per engine.
RAW = {"trn2": 27.2, "trn3": 38.4}
TABLE = {"trn2": 23.0, "trn3": 33.0}


def descriptor_ns(target):
    return 8192 / TABLE[target] - 8192 / RAW[target]


def dma(dst, src, dst_region, src_region, nbytes, op="dma_copy", attrs=None):
    return instruction(0, op, "dma", [dst, src], reads=[src_region], writes=[dst_region], dma_bytes=nbytes,
                       attrs=attrs)


def hbm_to_sbuf(partitions=(0, 128), free=2048, hbm_stride=2):
    parts = partitions[1] - partitions[0]
    return dma(operand("dst", (parts, free), "bfloat16", itemsize=2),
               operand("src", (parts, free), "bfloat16", "hbm", 2, hbm_stride),
               region(1, (0, 2 * free), partitions), region(2, (0, 2 * parts * free), (0, 1), "hbm"), 2 * parts * free)


@pytest.mark.parametrize("target", ["trn2", "trn3"])
def test_one_dma_time_is_latency_plus_descriptors_plus_bytes(target):
    """[128, 2048] bf16 HBM -> SBUF: 16 engines x 8 partitions x 4 KiB each."""
    run = nki_cpu.run_kernel(copy_through_sbuf_kernel, random((128, 2048), BF16), target=target)
    est = cost.estimate(run.trace)
    load, store = est.instructions
    expected = 1300 + 8 * descriptor_ns(target) + 8 * 4096 / RAW[target]
    assert load.done == pytest.approx(expected)
    assert sorted(piece.track for piece in load.slices) == sorted(f"dma{q}" for q in range(16))
    assert store.start == pytest.approx(load.done + 1300)       # RAW on the SBUF tile, then the fixed latency
    assert est.hbm_bytes == 2 * 128 * 2048 * 2


def test_calibration_reproduces_the_measured_single_engine_transfer():
    """DMA-OV: one Trn2 engine moved A[4, 4096] bf16 (32 KiB, 4 runs) HBM -> SBUF in 1416 ns."""
    plan = plan_dma(hbm_to_sbuf((0, 4), 4096), cost.hardware("trn2"))
    (part,) = plan.parts
    engine_time = part.runs * cost.hardware("trn2").dma_descriptor_ns + part.nbytes / plan.rate
    assert engine_time == pytest.approx(1416, rel=0.01)


@pytest.mark.parametrize("partitions, queues", [
    ((0, 128), list(range(16))),
    ((0, 1), [0]),
    ((64, 96), [8, 9, 10, 11]),
    ((4, 12), [0, 1]),
])
def test_queue_policy_follows_sbuf_partitions(partitions, queues):
    plan = plan_dma(hbm_to_sbuf(partitions), cost.hardware("trn2"))
    assert [part.queue for part in plan.parts] == queues
    assert sum(part.nbytes for part in plan.parts) == pytest.approx(2 * (partitions[1] - partitions[0]) * 2048)


def test_hbm_to_hbm_spreads_over_all_queues_and_counts_both_sides():
    ins = dma(operand("dst", (4096,), "bfloat16", "hbm", 2), operand("src", (4096,), "bfloat16", "hbm", 2),
              region(1, (0, 8192), (0, 1), "hbm"), region(2, (0, 8192), (0, 1), "hbm"), 8192)
    plan = plan_dma(ins, cost.hardware("trn2"))
    assert len(plan.parts) == 16 and plan.hbm_per_byte == 2


def _per_byte_ns(ins, target="trn2"):
    hw = cost.hardware(target)
    plan = plan_dma(ins, hw)
    part = plan.parts[0]
    return (part.runs * hw.dma_descriptor_ns + part.nbytes / plan.rate) / part.nbytes


def test_small_transfers_are_overhead_bound():
    """DMA-BW: <256 B per partition is a small fraction of peak, >=4 KiB saturates."""
    big, small = _per_byte_ns(hbm_to_sbuf(free=2048)), _per_byte_ns(hbm_to_sbuf(free=64))
    assert 1 / big > 0.85 * TABLE["trn2"]           # 4 KiB per partition: near the table rate
    assert 1 / small < 0.2 * RAW["trn2"]            # 128 B per partition: a small fraction
    assert small / big > 4


def test_strided_hbm_access_moves_one_element_per_descriptor():
    strided = hbm_to_sbuf(free=2048, hbm_stride=256)
    plan = plan_dma(strided, cost.hardware("trn2"))
    assert sum(part.runs for part in plan.parts) == 128 * 2048
    assert _per_byte_ns(strided) > 10 * _per_byte_ns(hbm_to_sbuf(free=2048))


@pytest.mark.parametrize("op, dst_buffer, target, factor", [
    ("dma_transpose", "sbuf", "trn2", 0.9),    # from HBM: up to 90% of copy throughput
    ("dma_compute", "sbuf", "trn2", 0.5),      # DMA compute engines: ~50% before NC-v4
    ("dma_compute", "sbuf", "trn3", 1.0),      # NC-v4 SBUF read-add-write at copy rate
    ("dma_compute", "hbm", "trn3", 0.5),
])
def test_throughput_factors(op, dst_buffer, target, factor):
    ins = dma(operand("dst", (128, 512), "bfloat16", dst_buffer, 2), operand("src", (128, 512), "bfloat16", "hbm", 2),
              region(1, (0, 1024), (0, 128) if dst_buffer == "sbuf" else (0, 1), dst_buffer),
              region(2, (0, 131072), (0, 1), "hbm"), 131072, op=op)
    assert plan_dma(ins, cost.hardware(target)).rate == pytest.approx(RAW[target] * factor)


@pytest.mark.parametrize("queues, data_rate", [
    (16, 27.2),          # one physical core at LNC=2: 725 / 16 = 45 B/ns per queue, the engine is the limit
    (32, 725 / 32),      # both physical cores: the HBM share (22.7 B/ns) is the limit
])
def test_hbm_share_caps_the_queue_rate(queues, data_rate):
    hw = cost.hardware("trn2")
    plan = plan_dma(hbm_to_sbuf(), hw)
    part = plan.parts[0]
    expected = part.runs * descriptor_ns("trn2") + part.nbytes / data_rate
    assert part_ns(part, plan, hw, hbm_share=725 / queues) == pytest.approx(expected)
