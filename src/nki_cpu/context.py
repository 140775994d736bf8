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
        self.memory = MemoryTracker(target)
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
        # core_barrier calls per program instance: trace positions where each instance passed one.
        self.barriers: dict[tuple[int, ...], list[int]] = {}

    def start_instance(self, program_id: tuple[int, ...]) -> None:
        """Each program instance is its own NeuronCore: fresh accumulator registers."""
        self.program_id = program_id
        self.shared_cursor = 0
        self.scalar_accumulator[:] = 0.0
        self.vector_accumulator[:] = 0.0

    def record(self, op: str, engine: str, site: tuple[str, int], operands: tuple, reads: tuple, writes: tuple,
               attrs: dict, dma_bytes: int = 0, macs: int = 0) -> None:
        if not self.keep_trace:
            return
        raw = self._raw
        raw.append((len(raw), op, engine, operands, reads, writes, dma_bytes, macs, attrs, site, self.program_id))

    def note_barrier(self) -> None:
        self.barriers.setdefault(self.program_id, []).append(len(self._raw))

    def finish(self) -> Trace:
        self.trace.peak_sbuf_bytes = self.memory.peak["sbuf"]
        self.trace.peak_psum_bytes = self.memory.peak["psum"]
        return self.trace


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
