"""Record once, replay later: later launches of a data-independent kernel skip the Python kernel body.

The first launch of a kernel for a key (kernel function, target, grid, the shapes and dtypes of the tensor
arguments and the values of the others) runs as always: every hardware check, the full trace, the SBUF/PSUM
capacity check. Each instruction also keeps its numeric work on the launch's tape as a closure over views whose
access patterns are already resolved (`Launch.execute`), so the interpreter stays one interpreter. A launch whose run
read tensor values to decide control flow or on-chip addresses (a register loaded from data, an on-chip
scalar_offset, `.np()` from kernel code, `nl.device_print`) or traced an instruction without a closure is never
recorded: it is interpreted on every call. A scalar_offset on an HBM view is on the tape as its own step, which reads
the index again, moves the view and checks its bounds; a vector_offset DMA (gather, scatter) reads its index again in
its own work and checks its rows. Their trace regions (and a gather's bytes) are re-made; the instruction stream
itself does not change.

A replay points the argument allocations at the new arguments' memory, gives the kernel's HBM tensors fresh storage
(the caller may keep the previous outputs), refills scratch with NaN in place as a first run finds it (unless its first
access overwrites all of it), zeroes the accumulator registers, runs the tape in program order (grid instances as they interleaved, rendezvous
included) and hands back the recorded trace. Checks and trace depend only on the key, so they are not repeated.

`NKI_CPU_REPLAY=0` (or `enabled(False)`) turns replay off; `NKI_CPU_REPLAY_CACHE` (default 64) bounds the recordings
kept and `NKI_CPU_REPLAY_MB` (default 1024) the scratch memory they hold (least recently used go first).
"""

from __future__ import annotations

import contextlib
import enum
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .context import Launch
from .memory import new_storage, refill
from .trace import Trace

_state = {"enabled": os.environ.get("NKI_CPU_REPLAY", "1") not in ("0", "false", "off"),
          "size": int(os.environ.get("NKI_CPU_REPLAY_CACHE", "64")),
          "bytes": int(float(os.environ.get("NKI_CPU_REPLAY_MB", "1024")) * 2**20)}
_cache: OrderedDict[tuple, "Recording"] = OrderedDict()
_lock = threading.Lock()


def is_enabled() -> bool:
    return _state["enabled"]


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Turn replay on or off inside the block (tests compare both modes); recordings are cleared on entry and exit."""
    before = _state["enabled"]
    _state["enabled"] = flag
    clear()
    try:
        yield
    finally:
        _state["enabled"] = before
        clear()


def clear() -> None:
    with _lock:
        _cache.clear()


def cached_keys() -> int:
    return len(_cache)


class _Uncacheable(Exception):
    """An argument whose value the key cannot capture (the launch is interpreted every time)."""


def launch_key(func: Callable, args: tuple, kwargs: dict, grid: tuple[int, ...], target_name: str) -> tuple | None:
    """What a launch's checks, trace and instruction stream may depend on; None when it cannot be captured."""
    if not _state["enabled"]:
        return None
    try:
        return (func, target_name, grid, tuple(_value_key(a) for a in args),
                tuple(sorted((k, _value_key(v)) for k, v in kwargs.items())))
    except _Uncacheable:
        return None


_SCALARS = (bool, int, float, str, type(None), np.number, np.bool_)


def _value_key(value) -> tuple:
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return ("scalar", repr(value.item()))
        return ("numpy", value.dtype, value.shape, value.flags.c_contiguous)
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        shape = value.shape
        if not shape:
            return ("scalar", repr(value.item()))
        return ("torch", value.dtype, shape, value.is_contiguous(), value.device)
    if isinstance(value, enum.Enum):
        return (type(value).__qualname__, value.name)
    if isinstance(value, _SCALARS):
        return (type(value).__name__, repr(value))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(_value_key(v) for v in value)
    raise _Uncacheable(type(value).__name__)


@dataclass
class Recording:
    """A taped launch: its tape, allocations and result views, and its trace."""

    launch: Launch
    arguments: list            # the argument allocations, in wrapping order
    result: Any                # what the kernel returned (views of the recorded allocations)
    trace: Trace
    busy: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nbytes(self) -> int:
        """Storage the recording keeps alive: every allocation the kernel made."""
        return sum(alloc.raw.nbytes for alloc in self.launch.allocations.values())

    def replay(self, bind_arguments: Callable[[list], Any]) -> tuple[Any, Trace]:
        """Run the tape on storage set up as a first run finds it; `bind_arguments` points the argument allocations
        at the new arguments and returns the object that converts the result."""
        launch = self.launch
        bound = set(id(a) for a in self.arguments)
        wrapped = bind_arguments(self.arguments)
        written = launch.written_first
        for alloc in launch.allocations.values():
            if id(alloc) in bound:
                continue
            if alloc.kind == "hbm":       # may be returned: the caller keeps the previous call's output
                alloc.raw = np.empty_like(alloc.raw) if written.get(alloc.id) else \
                    new_storage(alloc.dtype, alloc.raw.nbytes // alloc.dtype.itemsize)
            elif not written.get(alloc.id):     # scratch is refilled in place (its views stay valid), unless
                refill(alloc.raw, alloc.dtype)  # its first access overwrites all of it
        for registers in launch.registers:
            registers[:] = 0.0
        with np.errstate(all="ignore"):
            for compute in launch.tape:
                compute()
        return wrapped, self._trace()

    def _trace(self) -> Trace:
        """The recorded trace; its data-dependent fields (regions of scalar_offset and vector_offset views, bytes a
        gather moved) as this replay made them."""
        if not self.launch.trace_patches:
            return self.trace
        raw = list(self.trace.raw_instructions)
        for seq, slot, position, value in self.launch.trace_patches:
            fields = list(raw[seq])
            if position is None:
                fields[slot] = value()
            else:
                regions = list(fields[slot])
                regions[position] = value()
                fields[slot] = tuple(regions)
            raw[seq] = tuple(fields)
        recorded = self.trace
        return Trace(kernel=recorded.kernel, target=recorded.target, grid=recorded.grid, raw_instructions=raw,
                     peak_sbuf_bytes=recorded.peak_sbuf_bytes, peak_psum_bytes=recorded.peak_psum_bytes,
                     sbuf_capacity_bytes=recorded.sbuf_capacity_bytes, psum_capacity_bytes=recorded.psum_capacity_bytes)


def lookup(key: tuple | None) -> Recording | None:
    if key is None:
        return None
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def store(key: tuple | None, recording: Recording) -> None:
    if key is None or recording.launch.replay_blocker is not None or _state["size"] <= 0:
        return
    with _lock:
        _cache[key] = recording
        _cache.move_to_end(key)
        held = sum(r.nbytes for r in _cache.values())
        while len(_cache) > _state["size"] or (held > _state["bytes"] and len(_cache) > 1):
            held -= _cache.popitem(last=False)[1].nbytes
