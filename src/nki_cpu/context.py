"""State of the kernel launch that is running: target, memory, accumulators, trace.

Instructions find it through `current()`. Outside any launch (e.g. a test calling `nisa`
directly) a standalone launch for the environment's target is created on demand.
"""

from __future__ import annotations

import numpy as np

from .memory import MemoryTracker
from .targets import Target, resolve_target
from .trace import Trace


class Launch:
    """One kernel launch: every program instance of a grid shares it."""

    def __init__(self, target: Target, kernel_name: str, grid: tuple[int, ...] = (), keep_trace: bool = True):
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
        return InstanceState(program_id, np.zeros(pmax, np.float32), np.zeros(pmax, np.float32), tracker)

    def enter(self, state: "InstanceState") -> None:
        """Make `state`'s instance the one that runs."""
        self.program_id, self.shared_cursor = state.program_id, state.shared_cursor
        self.scalar_accumulator, self.vector_accumulator = state.scalar_accumulator, state.vector_accumulator
        self.memory = state.memory

    def leave(self, state: "InstanceState") -> None:
        """Keep what the running instance changed (its shared_hbm cursor) in `state`."""
        state.shared_cursor = self.shared_cursor

    def record(self, op: str, engine: str, site: tuple[str, int], operands: tuple, reads: tuple, writes: tuple,
               attrs: dict, dma_bytes: int = 0, macs: int = 0) -> None:
        self.memory.access(site, reads, writes)
        if not self.keep_trace:
            return
        raw = self._raw
        raw.append((len(raw), op, engine, operands, reads, writes, dma_bytes, macs, attrs, site, self.program_id))

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
