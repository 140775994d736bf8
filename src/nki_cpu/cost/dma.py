"""DMA instructions: how a transfer splits over the 16 DMA engines, what each part costs, and the
HBM bandwidth that all DMA engines of a logical core share.

Queue policy (DMA-OV): each of the 16 DMA engines serves 8 SBUF partitions, so a transfer is split
over the engines whose partitions its SBUF/PSUM side touches, in proportion to the partitions: a
[128, F] load uses all 16 engines, a [1, F] load engine 0 only. An engine serves its transfers as
their inputs become ready (`schedule._Bookings`). HBM -> HBM copies have no partition side and are spread evenly over all 16
engines (an assumption; DMA-OV only says a transfer is "parallelized up to 16 DMA engines,
depending on the shape").

One engine's part takes `runs x descriptor_ns + bytes / rate`, starting no earlier than
`dma_fixed_latency_ns` after the instruction's inputs are ready (trigger, descriptor and
semaphore latency, DMA-BW); the latency overlaps earlier transfers on the queue.
- runs: descriptors, one per contiguous piece of memory on the HBM side (dims merged wherever
  the memory is contiguous across them, as DMA-OV's profiles show: A[4, 4096] contiguous in HBM
  is "a single transfer size of 32KiB" on one engine, and a [128, 128] load is one 2 KiB read of
  8 rows per engine), and at least one per engine used. SBUF -> SBUF transfers count the more
  fragmented side. Per-descriptor cost models the documented small-transfer penalty (DMA-BW:
  <256 B per partition is overhead-bound, >=2 KiB approaches peak) and strided access (an
  innermost stride that skips memory moves one element per run). A dma_transpose is costed as the
  copy that writes its destination, at up to 90% of that copy's throughput (ARCH3: "DMA transpose
  ... up to 90% of DMA copy throughput from HBM"); counting its narrow source rows as descriptors
  instead would hold the nki-autotune lhs_rhs kernel (89.26% MFU measured, transposes on every
  load) far below its measurement.
- rate: the engine's raw rate times a per-op throughput factor (`THROUGHPUT`), and for parts that
  touch HBM at most an equal share of the logical core's HBM bandwidth: bandwidth / (16 queues x
  physical cores in use). The DMA queues of all cores together can therefore never move HBM bytes
  faster than the bandwidth, and they share it fairly. (An equal share rather than first-come
  booking: a program-order list scheduler cannot know which queues will still compete for a
  stretch of time, and booking greedily starves later queues. The price: a lone queue gets no more
  than its share, 22.7 B/ns instead of 27.2 on Trn2 when both cores of LNC=2 are used or at LNC=1.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from ..trace import Instruction, Operand
from .hardware import Hardware, itemsize


class DmaPart(NamedTuple):
    queue: int        # DMA engine (queue) index, 0..15
    nbytes: float     # bytes this engine moves
    runs: float       # contiguous runs (descriptors) it handles


@dataclass(frozen=True)
class DmaPlan:
    parts: tuple[DmaPart, ...]
    rate: float             # bytes/ns one engine streams for this instruction
    hbm_per_byte: float     # HBM traffic per byte moved: 0 (SBUF -> SBUF), 1, 2 (HBM -> HBM) ...
    documented: bool


def part_ns(part: DmaPart, plan: DmaPlan, hw: Hardware, hbm_share: float) -> float:
    """Time one engine spends on its part: descriptors, then bytes at the engine rate, capped by
    the queue's share of HBM bandwidth (`hbm_share`, bytes/ns) when the transfer touches HBM."""
    rate = min(plan.rate, hbm_share / plan.hbm_per_byte) if plan.hbm_per_byte else plan.rate
    return part.runs * hw.dma_descriptor_ns + part.nbytes / rate


def plan_dma(ins: Instruction, hw: Hardware) -> DmaPlan:
    """Split a DMA instruction over its queues, with its descriptor runs, rate and HBM traffic."""
    factor = THROUGHPUT.get(ins.op)
    data = [o for o in ins.operands if o.role != "index"]
    moved = float(ins.dma_bytes)
    runs = _runs(data[0]) if ins.op == "dma_transpose" else _descriptors(data)
    shares = _queue_shares(ins, hw)
    parts = tuple(DmaPart(q, moved * share, max(1.0, runs * share)) for q, share in shares)
    rate = hw.dma_bytes_per_ns * (factor(ins, hw) if factor else 1.0)
    return DmaPlan(parts, rate, _hbm_bytes(ins, data) / moved if moved else 0.0, factor is not None)


# --- splitting over engines -------------------------------------------------------------------------

def _on_chip_partitions(ins: Instruction) -> tuple[int, int] | None:
    """Partition range of the SBUF/PSUM data side (dst first); index operands do not count."""
    if ins.writes and ins.writes[0].buffer != "hbm":
        return ins.writes[0].partitions
    for operand, region in zip(ins.operands[1:], ins.reads):   # non-dst operands align with reads
        if operand.role != "index" and region.buffer != "hbm":
            return region.partitions
    return None


def _queue_shares(ins: Instruction, hw: Hardware) -> list[tuple[int, float]]:
    """(engine, fraction of the transfer) pairs by the queue policy of the module docstring."""
    span = _on_chip_partitions(ins)
    if span is None:
        return [(q, 1.0 / hw.dma_engines) for q in range(hw.dma_engines)]
    lo, hi = span
    per = hw.partitions_per_dma_engine
    total = hi - lo
    return [(q, (min(hi, (q + 1) * per) - max(lo, q * per)) / total)
            for q in range(lo // per, (hi - 1) // per + 1)]


# --- fragmentation and traffic -----------------------------------------------------------------------

def _descriptors(data: list[Operand]) -> float:
    """Descriptors of a transfer: the contiguous runs of its HBM side(s), else of its more
    fragmented on-chip side."""
    hbm = [o for o in data if o.buffer == "hbm"]
    return max((_runs(o) for o in (hbm or data)), default=1.0)


def _runs(o: Operand) -> float:
    """Contiguous runs of memory one side is made of (on chip: per partition)."""
    return o.partitions * o.free_elems / max(1, o.run_elems)


def _hbm_bytes(ins: Instruction, data: list[Operand]) -> float:
    """HBM bytes read and written: every HBM data side, plus the dst again when it is also read."""
    if not data or not ins.dma_bytes:
        return 0.0
    elements = ins.dma_bytes / itemsize(data[0].dtype)
    total = sum(elements * itemsize(o.dtype) for o in data if o.buffer == "hbm")
    dst_alloc = ins.writes[0].alloc
    if data[0].buffer == "hbm" and any(r.alloc == dst_alloc for r in ins.reads):
        total += elements * itemsize(data[0].dtype)
    return total


# --- throughput factors per op -------------------------------------------------------------------

ThroughputFactor = Callable[[Instruction, Hardware], float]


def _compute_factor(ins: Instruction, hw: Hardware) -> float:
    """dma_compute: ~50% of copy throughput; full rate into SBUF on NC-v4 (ARCH4)."""
    into_sbuf = ins.writes[0].buffer == "sbuf"
    return 1.0 if hw.dma_compute_sbuf_full_rate and into_sbuf else hw.dma_compute_factor


def _copy_factor(ins: Instruction, hw: Hardware) -> float:
    """dma_copy at full rate; the 0.2 dst_rmw_op form is a dma_compute."""
    return _compute_factor(ins, hw) if ins.attrs.get("dst_rmw_op") else 1.0


def _transpose_factor(ins: Instruction, hw: Hardware) -> float:
    """dma_transpose: up to 90% of copy throughput from HBM, 50% SBUF -> SBUF (ARCH3)."""
    from_hbm = any(o.buffer == "hbm" for o in ins.operands[1:] if o.role != "index")
    return hw.dma_transpose_hbm_factor if from_hbm else hw.dma_transpose_sbuf_factor


THROUGHPUT: dict[str, ThroughputFactor] = {
    "dma_copy": _copy_factor,
    "dma_transpose": _transpose_factor,
    "dma_compute": _compute_factor,
}
