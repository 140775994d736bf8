"""Data dependencies between instructions, found from the trace's read and write Regions.

An instruction waits for every earlier instruction it conflicts with on memory: read-after-write,
write-after-read and write-after-write on the same allocation with overlapping partitions and
byte ranges. Only the latest-finishing conflict matters for its start time, so the tracker keeps,
per allocation, one slot per distinct box (byte range x partition range) holding that box's last
writer and its latest-finishing reader since. A write removes the slots it fully covers (whoever
conflicts with them later conflicts with the new write, which finishes after them). Lookups visit
only slots whose byte range can overlap (slots sorted by start, bounded by the widest slot), so the
work per access is proportional to the live boxes it overlaps, not to the trace length.

Chains: an instruction recorded with a `chain` time lets a later chained instruction that
conflicts with it start at that time instead of waiting for it to be done (TensorE matmuls
accumulating into one PSUM tile, which pipeline; see `schedule.py`).
"""

from __future__ import annotations

import bisect

from ..trace import Instruction, Region

Box = tuple[int, int, int, int]   # byte lo, byte hi, partition lo, partition hi


class _Slot:
    __slots__ = ("writer", "writer_done", "writer_chain", "reader", "reader_done", "reader_chain")

    def __init__(self) -> None:
        self.writer: int | None = None
        self.writer_done = 0.0
        self.writer_chain: float | None = None
        self.reader: int | None = None
        self.reader_done = 0.0
        self.reader_chain: float | None = None


class _AllocationLog:
    def __init__(self) -> None:
        self.slots: dict[Box, _Slot] = {}
        self.order: list[Box] = []
        self.widest = 0

    def overlapping(self, box: Box) -> list[tuple[Box, _Slot]]:
        b_lo, b_hi, p_lo, p_hi = box
        found = []
        order = self.order
        for i in range(bisect.bisect_left(order, (b_lo - self.widest,)), len(order)):
            other = order[i]
            if other[0] >= b_hi:
                break
            if other[1] > b_lo and other[2] < p_hi and other[3] > p_lo:
                found.append((other, self.slots[other]))
        return found

    def slot(self, box: Box) -> _Slot:
        slot = self.slots.get(box)
        if slot is None:
            slot = self.slots[box] = _Slot()
            bisect.insort(self.order, box)
            self.widest = max(self.widest, box[1] - box[0])
        return slot

    def remove(self, box: Box) -> None:
        del self.slots[box]
        del self.order[bisect.bisect_left(self.order, box)]


def _writer_time(slot: _Slot, chained: bool) -> float:
    return slot.writer_chain if chained and slot.writer_chain is not None else slot.writer_done


def _reader_time(slot: _Slot, chained: bool) -> float:
    return slot.reader_chain if chained and slot.reader_chain is not None else slot.reader_done


def _box(region: Region) -> Box:
    return (region.byte_range[0], region.byte_range[1], region.partitions[0], region.partitions[1])


class DependencyTracker:
    """Feed instructions in program order: `wait_for` before scheduling one, then `record` for it."""

    def __init__(self) -> None:
        self._logs: dict[int, _AllocationLog] = {}
        self._pending: tuple[list, list] = ([], [])

    def _log(self, region: Region) -> _AllocationLog:
        log = self._logs.get(region.alloc)
        if log is None:
            log = self._logs[region.alloc] = _AllocationLog()
        return log

    def wait_for(self, ins: Instruction, chained: bool = False) -> tuple[float, int | None]:
        """(time all conflicting earlier instructions are done, index of the latest of them). A
        `chained` instruction waits only for the chain time of chained writers."""
        ready, cause = 0.0, None
        reads, writes = [], []
        for region in ins.reads:
            log, box = self._log(region), _box(region)
            reads.append((log, box))
            for _, slot in log.overlapping(box):
                if slot.writer is not None and _writer_time(slot, chained) > ready:
                    ready, cause = _writer_time(slot, chained), slot.writer
        for region in ins.writes:
            log, box = self._log(region), _box(region)
            overlaps = log.overlapping(box)
            writes.append((log, box, overlaps))
            for _, slot in overlaps:
                if slot.writer is not None and _writer_time(slot, chained) > ready:
                    ready, cause = _writer_time(slot, chained), slot.writer
                if slot.reader is not None and _reader_time(slot, chained) > ready:
                    ready, cause = _reader_time(slot, chained), slot.reader
        self._pending = (reads, writes)
        return ready, cause

    def record(self, index: int, done: float, chain: float | None = None) -> None:
        """Note that the instruction last passed to `wait_for` (trace index `index`) is done at `done`;
        a chained successor may start at `chain`."""
        reads, writes = self._pending
        for log, box, overlaps in writes:
            for other, _ in overlaps:
                covered = other[0] >= box[0] and other[1] <= box[1] and other[2] >= box[2] and other[3] <= box[3]
                if covered and other in log.slots:
                    log.remove(other)
            slot = log.slot(box)
            slot.writer, slot.writer_done, slot.writer_chain = index, done, chain
        for log, box in reads:
            slot = log.slot(box)
            if slot.reader is None or done >= slot.reader_done:
                slot.reader, slot.reader_done, slot.reader_chain = index, done, chain
