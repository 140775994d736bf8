"""Chrome trace-event JSON of an estimate: open it in ui.perfetto.dev or chrome://tracing.

One process per estimate, one thread (track) per engine and DMA queue, plus a "critical path"
track repeating the chain that sets the end time. Each instruction slice is a complete ("X")
event in microseconds carrying its op, trace index and kernel source line.
"""

from __future__ import annotations

import json
import os

from .estimate import KernelEstimate

_PID = 1


def perfetto_events(estimate: KernelEstimate) -> list[dict]:
    """The trace events (metadata first, then one event per slice)."""
    tracks = estimate.schedule.tracks + ["critical path (est.)"]
    tid = {track: i + 1 for i, track in enumerate(tracks)}
    title = (f"est. {estimate.kernel} on {estimate.target} LNC={estimate.lnc} "
             f"(cost-model estimate, {estimate.time_us:.2f} us)")
    events = [{"ph": "M", "pid": _PID, "name": "process_name", "args": {"name": title}}]
    for track, number in tid.items():
        events.append({"ph": "M", "pid": _PID, "tid": number, "name": "thread_name", "args": {"name": track}})
        events.append({"ph": "M", "pid": _PID, "tid": number, "name": "thread_sort_index",
                       "args": {"sort_index": number}})
    for placed in estimate.instructions:
        args = {"index": placed.index, "source": f"{placed.source[0]}:{placed.source[1]}",
                "program_id": list(placed.program_id), "estimated": True}
        for piece in placed.slices:
            events.append(_slice(piece.track, tid, placed.op, placed.engine, piece.start, piece.end, args))
    critical = tid["critical path (est.)"]
    for step in estimate.critical_path:
        events.append({"ph": "X", "pid": _PID, "tid": critical, "name": step.op, "cat": "critical",
                       "ts": step.start / 1e3, "dur": (step.done - step.start) / 1e3,
                       "args": {"index": step.index, "source": f"{step.source[0]}:{step.source[1]}",
                                "waited_for": step.waited_for, "wait_kind": step.wait_kind, "estimated": True}})
    return events


def _slice(track: str, tid: dict, op: str, engine: str, start: float, end: float, args: dict) -> dict:
    return {"ph": "X", "pid": _PID, "tid": tid[track], "name": op, "cat": engine,
            "ts": start / 1e3, "dur": (end - start) / 1e3, "args": args}


def write_perfetto(estimate: KernelEstimate, path: str | os.PathLike) -> str:
    """Write the trace JSON to `path` and return the path."""
    body = {"traceEvents": perfetto_events(estimate), "displayTimeUnit": "ns",
            "otherData": {"kind": "nki_cpu cost-model estimate", "target": estimate.target, "lnc": estimate.lnc}}
    with open(path, "w") as handle:
        json.dump(body, handle)
    return os.fspath(path)
