"""`estimate(trace)`: the cost model's entry point and the `KernelEstimate` it returns.

Everything here is an estimate from documented formulas and constants (see `hardware.py`), not a
measurement; reports and plots label it so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..trace import Trace
from .hardware import SUPPORTED_LNC, Hardware, hardware
from .roofline import RooflinePoint, memory_floor_ns
from .schedule import COMPUTE_ENGINES, Schedule, ScheduledInstruction, critical_path, schedule


@dataclass
class KernelEstimate:
    """Estimated execution of one kernel launch on one logical core (times in ns)."""

    kernel: str
    target: str
    lnc: int
    hardware: Hardware
    schedule: Schedule
    dma_bytes: int
    hbm_bytes: float
    macs: int
    memory_floor_ns: float     # HBM bytes / logical-core HBM bandwidth
    compute_floor_ns: float    # every matmul at TensorE peak for its dtype, on all lnc cores
    critical_path: list[ScheduledInstruction] = field(repr=False)

    @property
    def time_ns(self) -> float:
        return self.schedule.end_ns

    @property
    def time_us(self) -> float:
        return self.time_ns / 1e3

    @property
    def floor_ns(self) -> float:
        return max(self.memory_floor_ns, self.compute_floor_ns)

    @property
    def floor_us(self) -> float:
        return self.floor_ns / 1e3

    @property
    def instructions(self) -> list[ScheduledInstruction]:
        return self.schedule.instructions

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def busy_fraction(self) -> dict[str, float]:
        """Per track (engine or DMA queue): busy time / kernel time."""
        end = self.time_ns or 1.0
        return {track: busy / end for track, busy in self.schedule.busy_ns.items()}

    @property
    def engine_busy_fraction(self) -> dict[str, float]:
        """Per engine kind, averaged over physical cores; "dma" averages over all DMA queues."""
        fractions = self.busy_fraction
        kinds = {track: track.split(".")[-1] for track in fractions}
        kinds = {track: ("dma" if kind.startswith("dma") else kind) for track, kind in kinds.items()}
        result = {}
        for kind in COMPUTE_ENGINES + ("dma",):
            values = [fractions[t] for t, k in kinds.items() if k == kind]
            result[kind] = sum(values) / len(values)
        return result

    @property
    def hbm_bytes_per_s(self) -> float:
        """Achieved (estimated) HBM bandwidth."""
        return self.hbm_bytes / self.time_ns * 1e9 if self.time_ns else 0.0

    @property
    def peak_hbm_bytes_per_s(self) -> float:
        return self.hardware.hbm_bytes_per_ns(self.lnc) * 1e9

    @property
    def flops_per_s(self) -> float:
        """Achieved (estimated) FLOP/s."""
        return self.flops / self.time_ns * 1e9 if self.time_ns else 0.0

    @property
    def peak_flops_per_s(self) -> float:
        """BF16 TensorE peak of the logical core."""
        return self.hardware.peak_flops_per_ns(self.lnc) * 1e9

    @property
    def undocumented_ops(self) -> dict[str, int]:
        """Ops costed with a default because no formula is documented, with their counts."""
        return dict(self.schedule.undocumented_ops)

    def roofline_point(self, label: str | None = None) -> RooflinePoint:
        return RooflinePoint(label or self.kernel, self.flops, self.hbm_bytes, self.time_ns)

    def critical_path_by_source(self) -> list[tuple[str, str, int, float]]:
        """(source "file:line", op, instructions, est. ns on the critical path), most time first.
        Time on the path counts from the previous link's completion to this link's completion."""
        totals: Counter = Counter()
        counts: Counter = Counter()
        previous = 0.0
        for step in self.critical_path:
            key = (f"{step.source[0]}:{step.source[1]}", step.op)
            totals[key] += step.done - previous
            counts[key] += 1
            previous = step.done
        return [(src, op, counts[(src, op)], ns) for (src, op), ns in totals.most_common()]

    def summary(self) -> dict:
        """Plain JSON-able numbers for logging (every value an estimate)."""
        return {
            "kernel": self.kernel, "target": self.target, "lnc": self.lnc,
            "cores_used": self.schedule.cores_used, "instructions": len(self.instructions),
            "est_time_us": self.time_us, "est_floor_us": self.floor_us,
            "est_memory_floor_us": self.memory_floor_ns / 1e3, "est_compute_floor_us": self.compute_floor_ns / 1e3,
            "hbm_bytes": self.hbm_bytes, "dma_bytes": self.dma_bytes, "macs": self.macs,
            "est_hbm_bytes_per_s": self.hbm_bytes_per_s, "est_flops_per_s": self.flops_per_s,
            "est_engine_busy_fraction": self.engine_busy_fraction,
            "critical_path_length": len(self.critical_path), "undocumented_ops": self.undocumented_ops,
        }


def estimate(trace: Trace, target: str | None = None, lnc: int = 2, hw: Hardware | None = None) -> KernelEstimate:
    """Estimate a traced kernel launch on `target` (default: the trace's target) at LNC `lnc`; `hw`
    replaces the target's constants (calibration fits try other values through it)."""
    if lnc not in SUPPORTED_LNC:
        raise ValueError(f"lnc must be one of {SUPPORTED_LNC}, got {lnc}")
    hw = hw or hardware(target or trace.target)
    placed = schedule(trace, hw, lnc)
    hbm_bytes = sum(p.hbm_bytes for p in placed.instructions)
    return KernelEstimate(
        kernel=trace.kernel, target=hw.name, lnc=lnc, hardware=hw, schedule=placed,
        dma_bytes=trace.total_dma_bytes, hbm_bytes=hbm_bytes, macs=trace.total_macs,
        memory_floor_ns=memory_floor_ns(hbm_bytes, hw, lnc), compute_floor_ns=_compute_floor_ns(trace, hw, lnc),
        critical_path=critical_path(placed.instructions),
    )


def _compute_floor_ns(trace: Trace, hw: Hardware, lnc: int) -> float:
    """Every matmul's MACs at the peak rate of its input dtype, spread over the lnc physical cores."""
    total = 0.0
    for ins in trace.instructions:
        if ins.macs:
            fp32 = any(o.dtype == "float32" for o in ins.operands if o.role in ("stationary", "moving"))
            double_row = ins.attrs.get("perf_mode") == "double_row"
            total += ins.macs / hw.pe_macs_per_ns("float32" if fp32 else "bfloat16", double_row)
    return total / lnc
