"""Trainium cost model fed by nki_cpu traces: estimated kernel time, engine use and critical path.

    import nki_cpu
    from nki_cpu import cost
    run = nki_cpu.run_kernel(kernel, *inputs, target="trn2")
    est = cost.estimate(run.trace, target="trn2", lnc=2)      # KernelEstimate
    print(cost.summary_table(est))
    cost.write_perfetto(est, "kernel.json")                    # open in ui.perfetto.dev
    cost.plot_timeline(est, "timeline.png")
    cost.plot_roofline([est.roofline_point()], "trn2", "roofline.png")
    cost.roofline_op(flops, hbm_bytes, target="trn2")          # ops that are not NKI kernels

Module map: hardware (per-target constants with sources), instructions (compute-instruction cycle
formulas, a registry by op), dma (DMA split over queues, per-part cost, shared HBM bandwidth),
dependencies (RAW/WAR/WAW tracking per allocation), schedule (list scheduling, critical path),
estimate (entry point, KernelEstimate), roofline (floors, non-NKI ops), perfetto / plots / report
(outputs).

Not modelled: compiler reordering (engines and DMA queues follow program order strictly, so a
DMA waiting on its inputs holds back later DMAs on its queues); instruction fetch and issue on the
engine sequencers; DMA triggering costs on the issuing engine (HWDGE ~600 ns on ScalarE/Sync, SWDGE
on GpSimd) and queue choice by trigger engine; descriptor queue limits and DMA QoS (Trn3); SBUF/PSUM
bank conflicts and VectorE-GpSimd shared-port contention; PE tiling (tile_position) and Trn3
background transposes running concurrently; the Trn3 bf16 ScalarE datapath beyond
tensor_copy/tensor_scalar; MX matmuls; HBM latency; collectives and cross-core barriers (program
instances on different physical cores share only HBM bandwidth and memory; a nisa.sendrecv between
them is costed as an on-chip DMA on the receiving core that waits for the sender's tile, with no
documented throughput of its own).
"""

from __future__ import annotations

from .estimate import KernelEstimate, estimate
from .hardware import HARDWARE, Hardware, hardware
from .perfetto import perfetto_events, write_perfetto
from .plots import plot_roofline, plot_timeline
from .report import summary_table
from .roofline import RooflineEstimate, RooflinePoint, roofline_op
from .schedule import ScheduledInstruction, Slice

__all__ = [
    "KernelEstimate", "estimate", "HARDWARE", "Hardware", "hardware", "perfetto_events", "write_perfetto",
    "plot_roofline", "plot_timeline", "summary_table", "RooflineEstimate", "RooflinePoint", "roofline_op",
    "ScheduledInstruction", "Slice",
]
