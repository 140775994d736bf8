"""Every kernel launch of a test, checked against its replay (nki_cpu.replay).

`checked_launches` wraps `nki_cpu.runtime.launch`: after each successful launch whose recording was kept, the same
launch runs again on copies of the original arguments (a replay, since the key now has a recording) and its
outputs, the arguments it wrote in place and its trace must equal the first run's bit for bit. The first run of a key
is a full interpretation, so this compares replay against interpretation on every kernel the tests launch.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import numpy as np

from nki_cpu import replay, runtime


class Tally:
    def __init__(self):
        self.launches = 0
        self.compared = 0


TOTAL = Tally()       # over the session, for the terminal summary


def summary() -> str:
    return f"replay check: {TOTAL.compared} of {TOTAL.launches} kernel launches replayed and matched bit for bit"


def _snapshot(value):
    if isinstance(value, np.ndarray) or (type(value).__module__.startswith("torch") and hasattr(value, "detach")):
        return value.copy() if isinstance(value, np.ndarray) else value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_snapshot(v) for v in value)
    return copy.copy(value)


def _bits(value):
    """Comparable bytes of an output (NaNs compare by their bit patterns)."""
    if isinstance(value, (tuple, list)):
        return [_bits(v) for v in value]
    if isinstance(value, dict):
        return {k: _bits(v) for k, v in value.items()}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        import torch
        tensor = value.detach().contiguous()
        carrier = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
        return (str(tensor.dtype), tuple(tensor.shape), tensor.view(carrier).numpy().tobytes())
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, np.ascontiguousarray(value).tobytes())
    return value


@contextlib.contextmanager
def checked_launches() -> Iterator[Tally]:
    original = runtime.launch
    tally = Tally()

    def launch(func, args, kwargs, grid, target):
        before = (_snapshot(args), _snapshot(kwargs))
        run = original(func, args, kwargs, grid, target)
        tally.launches += 1
        TOTAL.launches += 1
        key = replay.launch_key(func, args, kwargs, grid, runtime.resolve_target(target).name)
        if replay.lookup(key) is None:
            return run                         # not replayable (or replay off): nothing to compare
        again_args, again_kwargs = before
        recorders, runtime._recorders[:] = list(runtime._recorders), []
        try:
            second = original(func, again_args, again_kwargs, grid, target)
        finally:
            runtime._recorders[:] = recorders
        name = getattr(func, "__name__", "kernel")
        assert _bits(second.outputs) == _bits(run.outputs), f"{name}: replayed outputs differ"
        assert _bits(list(again_args)) == _bits(list(args)), f"{name}: replayed in-place writes differ"
        assert _bits(again_kwargs) == _bits(kwargs), f"{name}: replayed in-place writes differ"
        assert second.trace.to_json() == run.trace.to_json(), f"{name}: replayed trace differs"
        tally.compared += 1
        TOTAL.compared += 1
        return run

    runtime.launch = launch
    try:
        yield tally
    finally:
        runtime.launch = original
