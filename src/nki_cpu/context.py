"""State of the kernel launch that is running: target, memory, accumulators, trace.

Instructions find it through `current()`. Outside any launch (e.g. a test calling `nisa`
directly) a standalone launch for the environment's target is created on demand.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .memory import MemoryTracker
from .targets import Target, resolve_target
from .trace import Trace


class Launch:
    """One kernel launch: every program instance of a grid shares it."""

    def __init__(self, target: Target, kernel_name: str, grid: tuple[int, ...] = (), keep_trace: bool = True,
                 taping: bool = False):
        self.target = target
        self.keep_trace = keep_trace
        self.memory = MemoryTracker(target, track=keep_trace)
        self.grid = grid
        self.program_id: tuple[int, ...] = ()
        self.trace = Trace(kernel=kernel_name, target=target.name, grid=grid,
                           sbuf_capacity_bytes=target.sbuf_bytes_per_partition,
                           psum_capacity_bytes=target.psum_bytes_per_partition)
        self._raw = self.trace.raw_instructions
        # Per-lane accumulator registers, separate for ScalarE and VectorE (ISA docstrings).
        self.scalar_accumulator = np.zeros(target.pmax, dtype=np.float32)
        self.vector_accumulator = np.zeros(target.pmax, dtype=np.float32)
        # shared_hbm tensors are made once per grid: instance k reuses instance 0's n-th one.
        self.shared_tensors: list = []
        self.shared_cursor = 0
        # Set while the instances of a grid run as a gang (runtime.gang), which switches between them.
        self.gang = None
        self._trackers = [self.memory]
        # Record once, replay later (nki_cpu.replay): the numeric work of every instruction in program order, as
        # closures over views whose access patterns are resolved, and what a replay needs besides them.
        self.tape: list[Callable[[], None]] | None = [] if taping else None
        self.replay_blocker: str | None = None       # why this launch cannot be replayed (None: it can)
        self.allocations: dict = {}                  # id -> every allocation the kernel made (nl.ndarray)
        self.written_first: dict[int, bool] = {}     # id -> its first access wrote every byte (no refill needed)
        self.registers = [self.scalar_accumulator, self.vector_accumulator]
        self.dynamic_views: list = []                # scalar_offset views resolved since the last record
        # What a replay re-makes in its trace from the data it read: (seq, field, position in the field's tuple or
        # None for the field itself, the function giving the new value); fields 4 reads, 5 writes, 6 DMA bytes.
        self.trace_patches: list[tuple[int, int, int | None, Callable[[], object]]] = []
        self._taped = False

    def start_instance(self, program_id: tuple[int, ...]) -> None:
        """Each program instance is its own NeuronCore: fresh accumulator registers."""
        self.program_id = program_id
        self.shared_cursor = 0
        self.scalar_accumulator[:] = 0.0
        self.vector_accumulator[:] = 0.0

    def new_instance(self, program_id: tuple[int, ...]) -> "InstanceState":
        """State of a program instance that runs interleaved with others: its own registers and its
        own SBUF/PSUM accounting (each instance is a physical core)."""
        tracker = self.memory.sibling()
        self._trackers.append(tracker)
        pmax = self.scalar_accumulator.shape[0]
        state = InstanceState(program_id, np.zeros(pmax, np.float32), np.zeros(pmax, np.float32), tracker)
        self.registers += [state.scalar_accumulator, state.vector_accumulator]
        return state

    def enter(self, state: "InstanceState") -> None:
        """Make `state`'s instance the one that runs."""
        self.program_id, self.shared_cursor = state.program_id, state.shared_cursor
        self.scalar_accumulator, self.vector_accumulator = state.scalar_accumulator, state.vector_accumulator
        self.memory = state.memory

    def leave(self, state: "InstanceState") -> None:
        """Keep what the running instance changed (its shared_hbm cursor) in `state`."""
        state.shared_cursor = self.shared_cursor

    def execute(self, compute: Callable[[], None], instruction: bool = True) -> None:
        """Do an instruction's numeric work now and, when taping, keep it for replays. `instruction=False` for
        work that is not an instruction (filling an HBM constant, resolving a scalar offset)."""
        compute()
        if self.tape is not None:
            self.tape.append(compute)
            self._taped = self._taped or instruction

    def block_replay(self, reason: str) -> None:
        """The run read tensor values to decide control flow or addresses (or did work the tape lacks)."""
        if self.replay_blocker is None:
            self.replay_blocker = reason

    def record(self, op: str, engine: str, site: tuple[str, int], operands: tuple, reads: tuple, writes: tuple,
               attrs: dict, dma_bytes: int = 0, macs: int = 0) -> None:
        self.memory.access(site, reads, writes)
        if self.tape is not None:
            self._note_tape(op, operands, reads, writes)
        if not self.keep_trace:
            return
        raw = self._raw
        raw.append((len(raw), op, engine, operands, reads, writes, dma_bytes, macs, attrs, site, self.program_id))

    def patch_trace(self, patches: list[tuple[int, int | None, Callable[[], object]]]) -> None:
        """The instruction about to be recorded has data-dependent trace fields: (field, position, value function)."""
        if self.tape is not None:
            seq = len(self._raw)
            self.trace_patches.extend((seq, field, position, value) for field, position, value in patches)

    def _note_tape(self, op: str, operands: tuple, reads: tuple, writes: tuple) -> None:
        """Every traced instruction must have taped its work; regions of scalar_offset views are re-made on replay;
        an allocation whose first access writes all of it densely (no indirect scatter) needs no NaN refill before
        a replay."""
        if not self._taped:
            self.block_replay(f"{op} keeps no replay closure")
        self._taped = False
        first = self.written_first
        for region in reads:
            first.setdefault(region.alloc, False)
        for operand, region in zip(operands, writes):      # the written operands come first, in order
            if region.alloc not in first:
                alloc = self.allocations.get(region.alloc)
                first[region.alloc] = alloc is not None and operand[7] and not operand[9] \
                    and region.partitions == (0, alloc.partitions) \
                    and region.byte_range == (0, alloc.bytes_per_partition)
        if self.dynamic_views:
            seq = len(self._raw)
            for view in self.dynamic_views:
                for slot, regions in ((4, reads), (5, writes)):
                    for position, region in enumerate(regions):
                        if region is view._region:
                            self.trace_patches.append((seq, slot, position, view.region))
            self.dynamic_views.clear()

    def finish(self) -> Trace:
        """The trace, once every instance's SBUF/PSUM live ranges have been checked against capacity."""
        for tracker in self._trackers:
            tracker.check()
        self.trace.peak_sbuf_bytes = max(t.peak["sbuf"] for t in self._trackers)
        self.trace.peak_psum_bytes = max(t.peak["psum"] for t in self._trackers)
        return self.trace


class InstanceState:
    """Per program instance: its program id, shared_hbm cursor, accumulator registers and memory."""

    __slots__ = ("program_id", "shared_cursor", "scalar_accumulator", "vector_accumulator", "memory")

    def __init__(self, program_id: tuple[int, ...], scalar_accumulator: np.ndarray, vector_accumulator: np.ndarray,
                 memory: MemoryTracker):
        self.program_id = program_id
        self.shared_cursor = 0
        self.scalar_accumulator = scalar_accumulator
        self.vector_accumulator = vector_accumulator
        self.memory = memory


_stack: list[Launch] = []
_standalone: Launch | None = None


def current() -> Launch:
    if _stack:
        return _stack[-1]
    return standalone()


def standalone() -> Launch:
    """The launch used by instructions issued outside any kernel (target from the environment).
    It keeps no trace, so stray instructions do not accumulate records."""
    global _standalone
    target = resolve_target(None)
    if _standalone is None or _standalone.target is not target:
        _standalone = Launch(target, "<standalone>", keep_trace=False)
    return _standalone


def active() -> Launch | None:
    return _stack[-1] if _stack else None


def push(launch: Launch) -> None:
    _stack.append(launch)


def pop(launch: Launch) -> None:
    if _stack and _stack[-1] is launch:
        _stack.pop()
