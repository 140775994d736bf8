"""Roofline arithmetic: floors from bytes and FLOPs, and estimates for ops that are not NKI kernels.

The pipeline's model-level estimate (phase 2) needs a time for every op of a decode step, but only
some ops are NKI kernels with traces. For the others (torch ops compiled by the Neuron compiler)
`roofline_op` gives `max(HBM bytes / bandwidth, FLOPs / TensorE peak) / efficiency + fixed overhead` on
one logical core.
"""

from __future__ import annotations

from dataclasses import dataclass

from .hardware import Hardware, hardware

# Fixed cost of an op outside NKI: at least one DMA in and one out, each paying the ~1300 ns
# trigger-to-completion latency of DMA-BW. An estimate, not a documented figure; override it per op.
OPS_DMA_ROUND_TRIPS = 2


@dataclass(frozen=True)
class RooflinePoint:
    """One kernel or op on a roofline plot (all values estimated)."""

    label: str
    flops: float
    hbm_bytes: float
    time_ns: float

    @property
    def intensity(self) -> float:
        """FLOP per HBM byte (inf when nothing is read or written)."""
        return self.flops / self.hbm_bytes if self.hbm_bytes else float("inf")

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.time_ns * 1e9 if self.time_ns else 0.0


@dataclass(frozen=True)
class RooflineEstimate:
    """Estimated time of one op from its FLOPs and HBM bytes."""

    label: str
    flops: float
    hbm_bytes: float
    memory_ns: float      # HBM bytes at the logical core's HBM bandwidth
    compute_ns: float     # FLOPs at the logical core's TensorE peak for the dtype
    overhead_ns: float
    efficiency: float = 1.0   # fraction of the floor's peak rate the op reaches (1: at peak)

    @property
    def floor_ns(self) -> float:
        return max(self.memory_ns, self.compute_ns)

    @property
    def time_ns(self) -> float:
        return self.floor_ns / self.efficiency + self.overhead_ns

    @property
    def time_us(self) -> float:
        return self.time_ns / 1e3

    @property
    def bound(self) -> str:
        return "memory" if self.memory_ns >= self.compute_ns else "compute"

    def point(self) -> RooflinePoint:
        return RooflinePoint(self.label, self.flops, self.hbm_bytes, self.time_ns)


def memory_floor_ns(hbm_bytes: float, hw: Hardware, lnc: int) -> float:
    return hbm_bytes / hw.hbm_bytes_per_ns(lnc)


def roofline_op(flops: float, hbm_bytes: float, target: str = "trn2", lnc: int = 2, dtype: str = "bfloat16",
                overhead_ns: float | None = None, label: str = "op", efficiency: float = 1.0) -> RooflineEstimate:
    """Estimate a non-NKI op: max(bytes / HBM bandwidth, flops / peak) / efficiency + fixed overhead, on
    one logical core. `dtype` picks the TensorE peak (float32 is 4x slower; every other dtype runs at the
    bf16 rate); `efficiency` in (0, 1] is the fraction of that peak the op's code reaches."""
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    hw = hardware(target)
    overhead = OPS_DMA_ROUND_TRIPS * hw.dma_fixed_latency_ns if overhead_ns is None else overhead_ns
    return RooflineEstimate(label, flops, hbm_bytes, memory_floor_ns(hbm_bytes, hw, lnc),
                            flops / hw.peak_flops_per_ns(lnc, dtype), overhead, efficiency)
