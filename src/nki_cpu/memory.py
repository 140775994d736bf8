"""Buffers, allocations and on-chip capacity accounting.

Every tensor's storage is one `Allocation`: a flat byte array (HBM), or P partitions of equal
byte size laid out partition-major (SBUF/PSUM), so that element (p, f) sits at p * F + f, which
is what `.ap()` patterns address. Allocations are separate arrays (no aliasing, as in the
official simulator). On-chip capacity is checked per partition by live range in program order
(first to last instruction touching a tensor, see `MemoryTracker`), and the peak is reported in
the trace. Allocations placed by hand with `address=` are checked against the capacity at that
address and count as their end address.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .checks import fail, kernel_site
from .dtypes import NkiDtype, fill_value
from .targets import Target


@dataclass(frozen=True, eq=False)
class Buffer:
    """A memory kind as kernels name it (`nl.sbuf`, `nl.shared_hbm`, ...)."""

    name: str
    kind: str            # "hbm", "sbuf" or "psum"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"nl.{self.name}"


SBUF = Buffer("sbuf", "sbuf")
PSUM = Buffer("psum", "psum")
PRIVATE_HBM = Buffer("private_hbm", "hbm")
SHARED_HBM = Buffer("shared_hbm", "hbm")
HBM = PRIVATE_HBM        # nl.hbm is an alias of nl.private_hbm (nki.language docs)

_fallback_ids = itertools.count(1)


class Allocation:
    """Storage behind one tensor and all its views."""

    __slots__ = ("id", "buffer", "kind", "raw", "dtype", "shape", "partitions", "bytes_per_partition",
                 "address", "name", "_matmul_flags", "__weakref__")

    def __init__(self, alloc_id: int, buffer: Buffer, raw: np.ndarray, dtype: NkiDtype, shape: tuple,
                 address: tuple[int, int] | None = None, name: str = ""):
        self.id = alloc_id
        self.buffer = buffer
        self.kind = buffer.kind
        self.raw = raw
        self.dtype = dtype
        self.shape = shape
        self.address = address
        self.name = name
        if self.kind == "hbm":
            self.partitions = 1
            self.bytes_per_partition = raw.nbytes
        else:
            self.partitions = shape[0]
            self.bytes_per_partition = raw.nbytes // max(shape[0], 1)
        self._matmul_flags: np.ndarray | None = None

    @property
    def matmul_flags(self) -> np.ndarray:
        """One byte per storage byte: nonzero where a matmul has written (PSUM accumulate=None rule)."""
        if self._matmul_flags is None:
            self._matmul_flags = np.zeros(self.raw.nbytes, dtype=np.uint8)
        return self._matmul_flags


def new_storage(dtype: NkiDtype, count: int) -> np.ndarray:
    """Fresh raw bytes filled as the official simulator fills new tensors (NaN / 4). The fill is written
    as its bit pattern through an unsigned view: the same bytes, without ml_dtypes' slow per-element fill."""
    return np.full(count, _fill_bits(dtype), dtype=f"u{dtype.itemsize}").view(np.uint8)


def refill(raw: np.ndarray, dtype: NkiDtype) -> None:
    """Fill existing storage as `new_storage` fills fresh storage."""
    raw.view(f"u{dtype.itemsize}").fill(_fill_bits(dtype))


@functools.lru_cache(maxsize=None)
def _fill_bits(dtype: NkiDtype) -> int:
    return int(np.array([fill_value(dtype)], dtype=dtype.storage).view(f"u{dtype.itemsize}")[0])


class _LiveRange:
    """What the capacity check keeps of one on-chip allocation: its size and where its live range lies."""

    __slots__ = ("owner", "kind", "size", "partitions", "placed", "label", "site", "first", "last", "first_site")

    def __init__(self, owner: "MemoryTracker", kind: str, size: int, partitions: int,
                 placed: tuple[int, int] | None, label: str, site: tuple[str, int]):
        self.owner = owner                  # the tracker (program instance) whose SBUF/PSUM holds it
        self.kind = kind
        self.size = size                    # bytes per partition (PSUM: whole banks)
        self.partitions = partitions
        self.placed = placed                # (first partition, end byte) for address= tensors
        self.label = label
        self.site = site                    # the nl.ndarray line
        self.first = 0                      # instruction clock of the first / last access (0: never)
        self.last = 0
        self.first_site: tuple[str, int] | None = None


class _Ledger:
    """Live ranges of every instance of a launch, on one instruction clock (program order of the trace),
    so an instruction that touches another instance's tile (nisa.sendrecv) extends that tile's range."""

    __slots__ = ("ranges", "clock")

    def __init__(self):
        self.ranges: dict[int, _LiveRange] = {}
        self.clock = 0


class MemoryTracker:
    """SBUF/PSUM occupancy of one program instance, by live range in program order.

    Rule: an on-chip tensor occupies its bytes from the first instruction that touches it to the
    last one, in the order the kernel issues them; a tensor no instruction touches occupies
    nothing. This is how the compiler's allocator sees a kernel: it allocates after tracing the
    whole instruction stream (`nl.ndarray` itself emits no instruction), by live intervals over
    that stream (aws-neuron-sdk nki/deep-dives/nki-compile-config.rst: with NKI allocation "the
    lifetime of each tensor then follows from the kernel source", allocated by linear scan over
    live ranges; nkigym's kernel_library README credits "tight per-iteration PSUM live ranges"
    for buffers declared inside a loop; nki-library's RoPE declares its four products before
    computing any, and its test filter says B * heads * S = 65536 fits, which holds only if a range
    starts at first use rather than at `nl.ndarray`). Python object lifetime plays no part, so a buffer
    re-allocated in each loop iteration is not held twice and an unused multi-buffer slot holds
    nothing. Because the interpreter runs eagerly, the last use of a tensor is known only once the
    kernel has run: accesses are recorded as they happen (`access`) and `check()` replays the
    intervals through a linear-scan allocator when the launch finishes, raising the
    HardwareLimitError at the `nl.ndarray` line of the tensor that does not fit. A single tensor
    larger than the whole capacity, or an `address=` past the end, fails at once.

    SBUF is two-dimensional (nki/get-started/about/data-representation-overview.rst: an on-chip
    tensor is a rectangle of partitions x bytes), so the scan places each tensor in the partition
    quadrants its size allows (ARCH2 start-partition rule: more than 64 partitions start at 0,
    33-64 at 0 or 64, up to 32 at a multiple of 32) wherever the fullest of them stays lowest, and
    the occupancy is that of the fullest quadrant. Byte-offset fragmentation is not modelled.
    PSUM tensors take whole banks across all partitions (accumulation groups are per bank).
    """

    def __init__(self, target: Target, ids: Iterator[int] | None = None, track: bool = True,
                 ledger: _Ledger | None = None):
        self.target = target
        self.capacity = {"sbuf": target.sbuf_bytes_per_partition, "psum": target.psum_bytes_per_partition}
        self.peak = {"sbuf": 0, "psum": 0}
        self.track = track
        self._ids = ids if ids is not None else itertools.count(1)
        self._ledger = ledger if ledger is not None else _Ledger()

    def sibling(self) -> "MemoryTracker":
        """A tracker for another program instance (its own SBUF/PSUM) drawing from the same allocation ids
        and recording on the same clock."""
        return MemoryTracker(self.target, self._ids, self.track, self._ledger)

    def next_id(self) -> int:
        return next(self._ids)

    def footprint(self, kind: str, nbytes: int) -> int:
        """Bytes per partition an allocation occupies: PSUM tensors start at a bank boundary."""
        if kind == "psum":
            bank = self.target.psum_bank_bytes
            return -(-nbytes // bank) * bank
        return nbytes

    def limit(self, kind: str) -> str:
        limit = "PSUM (8 banks x 2 KiB)" if kind == "psum" else "SBUF"
        return f"{limit} capacity {self.capacity[kind]} bytes per partition on {self.target.name}"

    def reserve(self, alloc: Allocation) -> None:
        """Check what can be checked now and start following the allocation's live range."""
        kind = alloc.kind
        if kind == "hbm":
            return
        size = self.footprint(kind, alloc.bytes_per_partition)
        label = f"{alloc.name or 'tensor'} {alloc.shape} {alloc.dtype.name}"
        placed = None
        if alloc.address is not None:
            first_partition, start = int(alloc.address[0]), int(alloc.address[1])
            if kind == "psum" and start % self.target.psum_bank_bytes:
                fail("nl.ndarray", "PSUM tensors start at a 2 KiB bank boundary",
                     f"address byte offset {start} for {alloc.name or 'tensor'} {alloc.shape}")
            if start + size > self.capacity[kind]:
                fail("nl.ndarray", self.limit(kind), f"address {start} + {size} bytes for {label}")
            placed = (first_partition, start + size)
        elif size > self.capacity[kind]:
            fail("nl.ndarray", self.limit(kind), f"{size} bytes for {label} alone")
        if self.track:
            self._ledger.ranges[alloc.id] = _LiveRange(self, kind, size, alloc.partitions, placed, label,
                                                       kernel_site())

    def access(self, site: tuple[str, int], reads: tuple, writes: tuple) -> None:
        """One instruction touched these regions (trace Regions): extend their tensors' live ranges."""
        if not self.track:
            return
        ledger = self._ledger
        ledger.clock += 1
        clock, ranges = ledger.clock, ledger.ranges
        for regions in (reads, writes):
            for region in regions:
                live = ranges.get(region.alloc)
                if live is not None:
                    if not live.first:
                        live.first, live.first_site = clock, site
                    live.last = clock

    def check(self) -> None:
        """Allocate every live range by linear scan in program order; fail where a tensor does not fit."""
        for kind in ("sbuf", "psum"):
            ranges = [r for r in self._ledger.ranges.values() if r.owner is self and r.first and r.kind == kind]
            self.peak[kind] = max(self.peak[kind], _LinearScan(self, kind).run(ranges))



class _LinearScan:
    """Linear-scan allocation of live ranges into partition quadrants (SBUF) or whole PSUM."""

    def __init__(self, tracker: MemoryTracker, kind: str):
        self.tracker = tracker
        self.kind = kind
        self.capacity = tracker.capacity[kind]
        self.quadrants = 4 if kind == "sbuf" else 1
        self.auto = [0] * self.quadrants
        self.placed: list[list[int]] = [[] for _ in range(self.quadrants)]

    def _spans(self, live: _LiveRange) -> list[range]:
        """Quadrant spans a tensor may take: by its explicit address, else by the start-partition rule."""
        if self.quadrants == 1:
            return [range(1)]
        count = -(-live.partitions // 32)
        if live.placed is not None:
            first = live.placed[0]
            return [range(first // 32, min((first + live.partitions - 1) // 32 + 1, 4))]
        if count > 2:
            return [range(4)]
        step = 2 if count == 2 else 1
        return [range(q, q + count) for q in range(0, 4, step)]

    def _load(self, q: int) -> int:
        return self.auto[q] + (max(self.placed[q]) if self.placed[q] else 0)

    def run(self, ranges: list[_LiveRange]) -> int:
        ranges.sort(key=lambda r: r.first)
        active: list[tuple[int, int, _LiveRange, range]] = []      # heap of (last, order, range, span)
        peak = 0
        for order, live in enumerate(ranges):
            while active and active[0][0] < live.first:
                self._release(*heapq.heappop(active)[2:])
            span = min(self._spans(live), key=lambda s: (max(self._load(q) for q in s), s.start))
            self._take(live, span)
            load = max(self._load(q) for q in span)
            if load > self.capacity:
                self._overflow(live, load, [a[2] for a in active])
            peak = max(peak, load)
            heapq.heappush(active, (live.last, order, live, span))
        return peak

    def _overflow(self, live: _LiveRange, load: int, others: list[_LiveRange]) -> None:
        largest = sorted(others, key=lambda r: -r.size)[:3]
        listed = "; ".join(f"{r.label} from {_where(r.site)}" for r in largest)
        fail("nl.ndarray", f"{self.tracker.limit(self.kind)} (live ranges in program order)",
             f"{load} bytes live when {live.label} is first used at {_where(live.first_site)}; "
             f"largest live: {listed}", live.site)

    def _take(self, live: _LiveRange, span: range) -> None:
        for q in span:
            if live.placed is not None:
                self.placed[q].append(live.placed[1])
            else:
                self.auto[q] += live.size

    def _release(self, live: _LiveRange, span: range) -> None:
        for q in span:
            if live.placed is not None:
                self.placed[q].remove(live.placed[1])
            else:
                self.auto[q] -= live.size


def _where(site: tuple[str, int] | None) -> str:
    return f"{site[0]}:{site[1]}" if site else "?"


def fallback_id() -> int:
    """Allocation ids for tensors made outside any kernel launch (e.g. module-level constants)."""
    return next(_fallback_ids) + 1_000_000
