"""DMA costs: one transfer's time from its bytes, queues, descriptors and fixed latency; the queue
policy; descriptors per contiguous run of HBM memory; small-transfer and strided-access penalties; the
HBM bandwidth share of a queue."""

import pytest

import nki_cpu
from cost_kernels import BF16, copy_through_sbuf_kernel, instruction, operand, random, region
from nki_cpu import cost
from nki_cpu.cost.dma import part_ns, plan_dma

# Primary numbers (DMA-OV, DMA-BW): table rate per engine (B/ns), 1300 ns fixed latency, 8 partitions per
# engine. The descriptor cost is fitted by `make calibrate` and read from the hardware record.
RATE = {"trn2": 23.0, "trn3": 33.0}


def descriptor_ns(target):
    return cost.hardware(target).dma_descriptor_ns


def dma(dst, src, dst_region, src_region, nbytes, op="dma_copy", attrs=None):
    return instruction(0, op, "dma", [dst, src], reads=[src_region], writes=[dst_region], dma_bytes=nbytes,
                       attrs=attrs)


def hbm_to_sbuf(partitions=(0, 128), free=2048, hbm_stride=2, hbm_run=None):
    """[P, free] bf16 from HBM; hbm_run: elements per contiguous HBM run (default: all contiguous)."""
    parts = partitions[1] - partitions[0]
    return dma(operand("dst", (parts, free), "bfloat16", itemsize=2),
               operand("src", (parts, free), "bfloat16", "hbm", 2, hbm_stride, run_elems=hbm_run),
               region(1, (0, 2 * free), partitions), region(2, (0, 2 * parts * free), (0, 1), "hbm"), 2 * parts * free)


def _engine_ns(ins, target="trn2"):
    hw = cost.hardware(target)
    plan = plan_dma(ins, hw)
    part = plan.parts[0]
    return part.runs * hw.dma_descriptor_ns + part.nbytes / plan.rate, part


def _per_byte_ns(ins, target="trn2"):
    ns, part = _engine_ns(ins, target)
    return ns / part.nbytes


@pytest.mark.parametrize("target", ["trn2", "trn3"])
def test_one_dma_time_is_latency_plus_descriptors_plus_bytes(target):
    """[128, 2048] bf16 HBM -> SBUF, contiguous in HBM: 16 engines x one 32 KiB run each."""
    run = nki_cpu.run_kernel(copy_through_sbuf_kernel, random((128, 2048), BF16), target=target)
    est = cost.estimate(run.trace)
    load, store = est.instructions
    expected = 1300 + descriptor_ns(target) + 8 * 4096 / RATE[target]
    assert load.done == pytest.approx(expected)
    assert sorted(piece.track for piece in load.slices) == sorted(f"dma{q}" for q in range(16))
    assert store.start == pytest.approx(load.done + 1300)       # RAW on the SBUF tile, then the fixed latency
    assert est.hbm_bytes == 2 * 128 * 2048 * 2


def test_the_measured_single_engine_transfer_is_reproduced():
    """DMA-OV: one Trn2 engine moved A[4, 4096] bf16, contiguous in HBM ("a single transfer size of
    32KiB"), HBM -> SBUF in 1416 ns."""
    engine_ns, part = _engine_ns(hbm_to_sbuf((0, 4), 4096))
    assert part.runs == 1
    assert engine_ns == pytest.approx(1416, rel=0.03)


def test_descriptors_follow_contiguous_hbm_memory_not_dims():
    """A block of rows from a wider matrix moves one run per row; the same bytes contiguous in HBM
    move one run per engine (DMA-OV Example 2: each engine "a single 2KiB read" of 8 rows)."""
    rows = plan_dma(hbm_to_sbuf(free=512, hbm_run=512), cost.hardware("trn2"))
    whole = plan_dma(hbm_to_sbuf(free=128), cost.hardware("trn2"))
    assert [part.runs for part in rows.parts] == [8.0] * 16
    assert [part.runs for part in whole.parts] == [1.0] * 16


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


def test_small_runs_are_overhead_bound():
    """DMA-BW: <256 B per partition is overhead-bound, >=4 KiB near saturation (the fitted descriptor cost
    puts 4 KiB runs at 85% of the table rate)."""
    big = _per_byte_ns(hbm_to_sbuf(free=2048, hbm_run=2048))       # 4 KiB rows
    small = _per_byte_ns(hbm_to_sbuf(free=64, hbm_run=64))         # 128 B rows
    assert 1 / big > 0.8 * RATE["trn2"]
    assert 1 / small < 0.3 * RATE["trn2"]
    assert small / big > 3


def test_strided_hbm_access_moves_one_element_per_descriptor():
    strided = hbm_to_sbuf(free=2048, hbm_stride=256)
    plan = plan_dma(strided, cost.hardware("trn2"))
    assert sum(part.runs for part in plan.parts) == 128 * 2048
    assert _per_byte_ns(strided) > 10 * _per_byte_ns(hbm_to_sbuf(free=2048))


def test_transpose_is_costed_as_the_copy_writing_its_destination():
    """A [128, 1024] destination filled from narrow 128-element source rows: 8 descriptors per engine
    (one per destination partition), not one per source row."""
    ins = dma(operand("dst", (128, 1024), "bfloat16", itemsize=2),
              operand("src", (1024, 128), "bfloat16", "hbm", 2, run_elems=128),
              region(1, (0, 2048)), region(2, (0, 262144), (0, 1), "hbm"), 262144, op="dma_transpose")
    plan = plan_dma(ins, cost.hardware("trn2"))
    assert [part.runs for part in plan.parts] == [8.0] * 16


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
    assert plan_dma(ins, cost.hardware(target)).rate == pytest.approx(RATE[target] * factor)


@pytest.mark.parametrize("queues, data_rate", [
    (16, 23.0),          # one physical core at LNC=2: 725 / 16 = 45 B/ns per queue, the engine is the limit
    (32, 725 / 32),      # both physical cores: the HBM share (22.7 B/ns) is the limit
])
def test_hbm_share_caps_the_queue_rate(queues, data_rate):
    hw = cost.hardware("trn2")
    plan = plan_dma(hbm_to_sbuf(), hw)
    part = plan.parts[0]
    expected = part.runs * descriptor_ns("trn2") + part.nbytes / data_rate
    assert part_ns(part, plan, hw, hbm_share=725 / queues) == pytest.approx(expected)
