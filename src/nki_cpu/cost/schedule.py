"""List scheduling of a trace onto the engines and DMA queues of one logical core.

Engines (tensor, vector, scalar, gpsimd) and the 16 DMA engines of each physical core run in
parallel, compute engines in program order. A compute instruction starts when its engine is free and
the instructions it conflicts with on memory (`dependencies.py`) are done; a DMA part takes the first
free stretch of its DMA engine after that (see `_Bookings`).
"Done" is when results are visible: a compute instruction occupies its engine for `busy_ns` and is
done `latency_ns` later; a DMA part starts `dma_fixed_latency_ns` after its inputs are ready and is
done when its bytes have moved (`dma.py`), its queue's HBM share being the logical core's HBM
bandwidth split evenly over the DMA queues of the physical cores in use.

An instruction that leaves its engine to the compiler (`engine=engine.unknown`: memset and
tensor_copy, "compiler selects best engine based on engine workload", nki.isa docstrings) goes to
the eligible engine on which it would finish first; GpSimd cannot access PSUM and takes none of
those. An explicit engine= is kept.

A memset whose every byte is overwritten before anything reads it is a dead store, which the
compiler removes: it costs nothing. The common case is zeroing a PSUM tile before the matmuls of
an accumulation group: accumulating onto PSUM written by a non-matmul instruction is undefined on
v2/v3 hardware (nki-api.md §10.1), so the group's first matmul must start it (overwrite), and a
matmul that accumulates onto a zero memset counts as overwriting it. Without
this, every PSUM tile's zeroing would sit on VectorE between two matmul groups, and the
measured 89-91% MFU of the hand-written autotune matmuls (calibration points) is out of reach.

Program instances of an SPMD grid run on the lnc physical cores of the logical core, instance k on
core k % lnc (LNC); they share that logical core's HBM bandwidth.

Each scheduled instruction remembers what held it back last (the data dependency or the previous
occupant of its engine/queue), which gives the critical path: the chain of instructions, walked
back from the one that finishes last, that determines the kernel's end time.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, replace
from typing import NamedTuple

from ..trace import Instruction, Trace
from .dependencies import DependencyTracker
from .dma import part_ns, plan_dma
from .hardware import Hardware
from .instructions import compute_cost

COMPUTE_ENGINES = ("tensor", "vector", "scalar", "gpsimd")


class Slice(NamedTuple):
    """A stretch of time one engine or DMA queue spends on one instruction."""

    track: str
    start: float
    end: float


@dataclass(slots=True)
class ScheduledInstruction:
    index: int                 # position in the trace (Instruction.seq)
    op: str
    engine: str
    source: tuple[str, int]
    program_id: tuple[int, ...]
    ready: float               # its data dependencies are done (ns)
    start: float               # first slice starts
    end: float                 # last slice ends
    done: float                # results visible to dependants
    slices: tuple[Slice, ...]
    waited_for: int | None     # index of the instruction that set `start`, None if nothing held it back
    wait_kind: str             # "data" (a dependency), "engine" (engine/queue busy) or "" (none)
    hbm_bytes: float
    documented: bool           # False: no documented cost formula for this op (a default was used)


@dataclass
class Schedule:
    instructions: list[ScheduledInstruction]
    tracks: list[str]
    busy_ns: dict[str, float]
    end_ns: float
    cores_used: int
    undocumented_ops: Counter


def schedule(trace: Trace, hw: Hardware, lnc: int) -> Schedule:
    """Place every instruction of `trace` in time on the given hardware and LNC."""
    instances = {pid: k for k, pid in enumerate(dict.fromkeys(ins.program_id for ins in trace.instructions))}
    cores_used = min(lnc, max(1, len(instances)))
    prefix = (lambda core: f"core{core}.") if cores_used > 1 else (lambda core: "")
    engines = COMPUTE_ENGINES + tuple(f"dma{q}" for q in range(hw.dma_engines))
    tracks = [prefix(core) + name for core in range(cores_used) for name in engines]
    state = _State(hw, tracks, hw.hbm_bytes_per_ns(lnc) / (hw.dma_engines * cores_used), dead_stores(trace))
    placed = []
    for ins in trace.instructions:
        track_prefix = prefix(instances[ins.program_id] % lnc)
        placed.append(state.place(ins, track_prefix))
    return Schedule(placed, tracks, state.busy, max((p.done for p in placed), default=0.0), cores_used,
                    state.undocumented)


class _State:
    def __init__(self, hw: Hardware, tracks: list[str], hbm_share: float, dead: set[int]):
        self.hw = hw
        self.dead = dead
        self.hbm_share = hbm_share                  # HBM bytes/ns available to one DMA queue
        self.deps = DependencyTracker()
        self.free = {t: 0.0 for t in tracks if "dma" not in t}   # when each compute engine is next free
        self.booked = {t: _Bookings() for t in tracks if "dma" in t}   # DMA queues: busy intervals
        self.last = {t: None for t in self.free}   # index of its last instruction
        self.busy = {t: 0.0 for t in tracks}
        self.undocumented: Counter = Counter()

    def place(self, ins: Instruction, prefix: str) -> ScheduledInstruction:
        chained = _accumulates_in_psum(ins)
        ready, cause = self.deps.wait_for(ins, chained)
        if ins.seq in self.dead:
            placed = ScheduledInstruction(ins.seq, ins.op, ins.engine, ins.source, ins.program_id, ready, ready,
                                          ready, ready, (), cause, "data" if cause is not None else "", 0.0, True)
        elif ins.engine == "dma":
            placed = self._place_dma(ins, prefix, ready, cause)
        else:
            placed = self._place_compute(ins, prefix, ready, cause)
        self.deps.record(ins.seq, placed.done, placed.end if chained else None)
        if not placed.documented:
            self.undocumented[ins.op] += 1
        return placed

    def _claim(self, track: str, earliest: float, cause: int | None) -> tuple[float, int | None, str]:
        """Start time on a track no earlier than `earliest`, and what held it back."""
        if self.free[track] > earliest:
            return self.free[track], self.last[track], "engine"
        return earliest, cause, "data" if cause is not None else ""

    def _occupy(self, track: str, index: int, start: float, end: float) -> Slice:
        self.free[track] = end
        self.last[track] = index
        self.busy[track] += end - start
        return Slice(track, start, end)

    def _place_compute(self, ins: Instruction, prefix: str, ready: float, cause: int | None) -> ScheduledInstruction:
        best = None
        for choice in _engine_choices(ins):
            cost = compute_cost(choice, self.hw)
            claim = self._claim(prefix + choice.engine, ready, cause)
            if best is None or claim[0] + cost.busy_ns < best[2][0] + best[1].busy_ns:
                best = (choice, cost, claim)
        ins, cost, (start, waited, kind) = best
        track = prefix + ins.engine
        piece = self._occupy(track, ins.seq, start, start + cost.busy_ns)
        return ScheduledInstruction(ins.seq, ins.op, ins.engine, ins.source, ins.program_id, ready, start,
                                    piece.end, piece.end + cost.latency_ns, (piece,), waited, kind, 0.0,
                                    cost.documented)

    def _place_dma(self, ins: Instruction, prefix: str, ready: float, cause: int | None) -> ScheduledInstruction:
        plan = plan_dma(ins, self.hw)
        earliest = ready + self.hw.dma_fixed_latency_ns
        pieces, last_end, waited, kind = [], earliest, cause, "data" if cause is not None else ""
        for part in plan.parts:
            track = f"{prefix}dma{part.queue}"
            duration = part_ns(part, plan, self.hw, self.hbm_share)
            start, blocker = self.booked[track].book(earliest, duration, ins.seq)
            part_waited, part_kind = (blocker, "engine") if blocker is not None else (
                cause, "data" if cause is not None else "")
            end = start + duration
            self.busy[track] += duration
            pieces.append(Slice(track, start, end))
            if end >= last_end:
                last_end, waited, kind = end, part_waited, part_kind
        start = min((p.start for p in pieces), default=earliest)
        return ScheduledInstruction(ins.seq, ins.op, ins.engine, ins.source, ins.program_id, ready, start,
                                    last_end, last_end, tuple(pieces), waited, kind,
                                    float(ins.dma_bytes) * plan.hbm_per_byte, plan.documented)


class _Bookings:
    """Busy intervals of one DMA engine. A transfer takes the first gap at or after the time its inputs
    are ready: an earlier transfer that still waits for its own inputs does not hold it back (DMA-OV:
    each engine serves 16 queues round robin, a queue per trigger engine, in order only within a
    queue), so a prefetch is not stuck behind a store waiting for the compute it drains."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.owners: list[int] = []

    def book(self, earliest: float, duration: float, owner: int) -> tuple[float, int | None]:
        """(start, index of the transfer that pushed it later than `earliest`, or None)."""
        start, blocker = earliest, None
        i = bisect.bisect_right(self.ends, earliest)
        while i < len(self.starts) and self.starts[i] < start + duration:
            if self.ends[i] > start:
                start, blocker = self.ends[i], self.owners[i]
            i += 1
        self.starts.insert(i, start)
        self.ends.insert(i, start + duration)
        self.owners.insert(i, owner)
        return start, blocker


# Ops whose engine the compiler picks when the kernel does not (nki.isa docstrings of memset and
# tensor_copy); the trace's engine, the interpreter's default, comes first and wins ties.
SELECTABLE_ENGINES: dict[str, tuple[str, ...]] = {
    "memset": ("vector", "gpsimd"),
    "tensor_copy": ("vector", "scalar", "gpsimd"),
}


def _engine_choices(ins: Instruction) -> list[Instruction]:
    """The instruction on each engine it may run on."""
    eligible = SELECTABLE_ENGINES.get(ins.op)
    if eligible is None or "engine_requested" in ins.attrs:
        return [ins]
    in_psum = any(o.buffer == "psum" for o in ins.operands)
    engines = [ins.engine] + [e for e in eligible if e != ins.engine and not (e == "gpsimd" and in_psum)]
    return [ins if e == ins.engine else replace(ins, engine=e) for e in engines]


def dead_stores(trace: Trace) -> set[int]:
    """Trace indices of zero memsets whose every byte is overwritten (or accumulated onto by a
    matmul) before anything else reads it (one pass)."""
    pending: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = {}
    dead: set[int] = set()
    for ins in trace.instructions:
        starts_group = ins.op == "nc_matmul"
        for region in ins.reads:
            stores = pending.get(region.alloc)
            if stores and not (starts_group and region.alloc == ins.writes[0].alloc):
                pending[region.alloc] = [s for s in stores if not _overlap(s[1], _box(region))]
        for region in ins.writes:
            stores = pending.get(region.alloc)
            if stores:
                box = _box(region)
                dead.update(seq for seq, other in stores if _covers(box, other))
                pending[region.alloc] = [s for s in stores if not _covers(box, s[1])]
        if ins.op == "memset" and ins.attrs.get("value") == 0.0:
            pending.setdefault(ins.writes[0].alloc, []).append((ins.seq, _box(ins.writes[0])))
    return dead


def _box(region) -> tuple[int, int, int, int]:
    return (*region.byte_range, *region.partitions)


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _covers(outer: tuple, inner: tuple) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1] and outer[2] <= inner[2] and inner[3] <= outer[3]


def _accumulates_in_psum(ins: Instruction) -> bool:
    """Matmuls into PSUM chain: back-to-back matmuls accumulating into one PSUM tile issue at the
    TensorE rate (the ISA-B1 matmul formula is for back-to-back instructions; PSUM accumulates near
    memory, ARCH2), so the next one waits for the previous one's engine time, not its latency."""
    return ins.op == "nc_matmul" and bool(ins.writes) and ins.writes[0].buffer == "psum"


def critical_path(placed: list[ScheduledInstruction]) -> list[ScheduledInstruction]:
    """The chain that sets the end time: from the last instruction to finish back along `waited_for`."""
    if not placed:
        return []
    chain = [max(placed, key=lambda p: p.done)]
    while chain[-1].waited_for is not None:
        chain.append(placed[chain[-1].waited_for])
    chain.reverse()
    return chain
