"""Buffers, allocations and on-chip capacity accounting.

Every tensor's storage is one `Allocation`: a flat byte array (HBM), or P partitions of equal
byte size laid out partition-major (SBUF/PSUM), so that element (p, f) sits at p * F + f, which
is what `.ap()` patterns address. Allocations are separate arrays (no aliasing, as in the
official simulator). On-chip capacity is checked per partition with live-allocation accounting:
bytes are reserved when an allocation is made and released when Python frees it (a weakref
finalizer), and the peak is reported in the trace. Allocations placed by hand with
`address=` are checked against the capacity at that address and count as their end address.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .checks import fail
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


@functools.lru_cache(maxsize=None)
def _fill_bits(dtype: NkiDtype) -> int:
    return int(np.array([fill_value(dtype)], dtype=dtype.storage).view(f"u{dtype.itemsize}")[0])


class MemoryTracker:
    """Live and peak bytes per partition of SBUF and PSUM for one kernel launch."""

    def __init__(self, target: Target, ids: Iterator[int] | None = None):
        self.target = target
        self.capacity = {"sbuf": target.sbuf_bytes_per_partition, "psum": target.psum_bytes_per_partition}
        self.live = {"sbuf": 0, "psum": 0}
        self.placed: dict[str, dict[int, int]] = {"sbuf": {}, "psum": {}}
        self.peak = {"sbuf": 0, "psum": 0}
        self._ids = ids if ids is not None else itertools.count(1)

    def sibling(self) -> "MemoryTracker":
        """A tracker for another program instance (its own SBUF/PSUM) drawing from the same allocation ids."""
        return MemoryTracker(self.target, self._ids)

    def next_id(self) -> int:
        return next(self._ids)

    def footprint(self, kind: str, nbytes: int) -> int:
        """Bytes per partition an allocation occupies: PSUM tensors start at a bank boundary."""
        if kind == "psum":
            bank = self.target.psum_bank_bytes
            return -(-nbytes // bank) * bank
        return nbytes

    def usage(self, kind: str) -> int:
        placed = self.placed[kind]
        return self.live[kind] + (max(placed.values()) if placed else 0)

    def reserve(self, alloc: Allocation) -> None:
        kind = alloc.kind
        if kind == "hbm":
            return
        size = self.footprint(kind, alloc.bytes_per_partition)
        capacity = self.capacity[kind]
        unit = "PSUM (8 banks x 2 KiB)" if kind == "psum" else "SBUF"
        if alloc.address is not None:
            start = int(alloc.address[1])
            if kind == "psum" and start % self.target.psum_bank_bytes:
                fail("nl.ndarray", "PSUM tensors start at a 2 KiB bank boundary",
                     f"address byte offset {start} for {alloc.name or 'tensor'} {alloc.shape}")
            if start + size > capacity:
                fail("nl.ndarray", f"{unit} capacity {capacity} bytes per partition on {self.target.name}",
                     f"address {start} + {size} bytes for {alloc.name or 'tensor'} {alloc.shape}")
            self.placed[kind][alloc.id] = start + size
            weakref.finalize(alloc, self.placed[kind].pop, alloc.id, None)
        else:
            if self.usage(kind) + size > capacity:
                fail("nl.ndarray", f"{unit} capacity {capacity} bytes per partition on {self.target.name}",
                     f"{self.usage(kind)} bytes live + {size} bytes for {alloc.name or 'tensor'} "
                     f"{alloc.shape} {alloc.dtype.name}")
            self.live[kind] += size
            weakref.finalize(alloc, self._release, kind, size)
        self.peak[kind] = max(self.peak[kind], self.usage(kind))

    def _release(self, kind: str, size: int) -> None:
        self.live[kind] -= size


def fallback_id() -> int:
    """Allocation ids for tensors made outside any kernel launch (e.g. module-level constants)."""
    return next(_fallback_ids) + 1_000_000
