"""Launching kernels: @nki.jit, kernel[grid], nki.simulate, run_kernel and trace recording.

A launch wraps NumPy arrays / CPU torch tensors as HBM tensors that share their memory (so a
kernel writing an input updates it in place, as the official simulator does), runs every
program instance of the grid in turn (a gang whose instances can meet at `nisa.sendrecv`, see
`gang`), and converts the returned HBM tensors back to the kind of the inputs (torch if any input
was torch, else NumPy; torch bf16 <-> ml_dtypes bfloat16). Each launch produces one Trace.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import ml_dtypes
import numpy as np
import threadpoolctl

from . import context, replay
from .dtypes import to_storage_array
from .errors import NkiUsageError
from .gang import Gang
from .memory import SHARED_HBM, Allocation
from .targets import resolve_target
from .tensor import NkiTensor, row_major_tensor, set_taping
from .trace import Trace

_recorders: list[list[Trace]] = []


@dataclass
class KernelRun:
    outputs: Any
    trace: Trace


class JitKernel:
    """What @nki.jit returns: call it, subscript it with a grid, or hand it to nki.simulate."""

    def __init__(self, func: Callable, target: str | None = None, options: dict | None = None, grid=None):
        self.func = func
        self.target = target
        self.options = options or {}
        self.grid = _normalise_grid(grid) if grid is not None else ()    # @nki.jit(grid=...): called without brackets
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        if context.active() is not None:      # called from another kernel: inline, like a sub-kernel
            return self.func(*args, **kwargs)
        return launch(self.func, args, kwargs, grid=self.grid, target=self.target).outputs

    def __getitem__(self, grid) -> "GridKernel":
        return GridKernel(self, _normalise_grid(grid))

    def with_schedule(self, schedule) -> "JitKernel":
        """Scheduling hints do not change results; execution is already in program order."""
        return self


class GridKernel:
    """kernel[grid]: every program id of the grid runs, in row-major order."""

    def __init__(self, kernel: JitKernel, grid: tuple[int, ...]):
        self.kernel = kernel
        self.grid = grid

    def __call__(self, *args, **kwargs):
        return launch(self.kernel.func, args, kwargs, grid=self.grid, target=self.kernel.target).outputs


def jit(func: Callable | None = None, mode: str = "auto", platform_target: str | None = None, grid=None, **options):
    """@nki.jit, @nki.jit() and @nki.jit(platform_target=..., grid=...) (0.2) all work."""
    if func is None:
        return lambda f: JitKernel(f, platform_target, {"mode": mode, **options}, grid)
    return JitKernel(func, platform_target, {"mode": mode, **options}, grid)


def simulate(kernel) -> Callable:
    """nki.simulate(kernel)(*args): the same eager run as calling the kernel."""
    return functools.partial(_call_any, kernel)


def _call_any(kernel, *args, **kwargs):
    return run_kernel(kernel, *args, target=None, **kwargs).outputs


def run_kernel(kernel, *args, target: str | None = "trn2", grid=None, **kwargs) -> KernelRun:
    """Run a kernel (jit object, kernel[grid] or plain function) and return its outputs and trace."""
    if isinstance(kernel, GridKernel):
        grid = kernel.grid if grid is None else grid
        kernel = kernel.kernel
    elif isinstance(kernel, JitKernel) and grid is None:
        grid = kernel.grid
    func = kernel.func if isinstance(kernel, JitKernel) else kernel
    chosen = target if target is not None else getattr(kernel, "target", None)
    return launch(func, args, kwargs, grid=_normalise_grid(grid) if grid is not None else (), target=chosen)


@contextlib.contextmanager
def recording() -> Iterator[list[Trace]]:
    """Collect the Trace of every kernel launched inside the block."""
    traces: list[Trace] = []
    _recorders.append(traces)
    try:
        yield traces
    finally:
        _recorders.remove(traces)


@functools.lru_cache(maxsize=1)
def _single_threaded_blas() -> None:
    """NumPy's BLAS on one thread for the process, once, at the first launch. The interpreter's products are
    tile-sized, where BLAS threads cost more than they give, and on a loaded machine their spin-waits
    dominate: a [128, 128]^T x [128, 512] fp32 product took 327 us wall with one OpenBLAS thread against
    2,492 us with two on this project's 2-core machine at load average 10 (180 against 1,446 us of CPU).
    torch's own thread pool is not affected."""
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def launch(func: Callable, args: tuple, kwargs: dict, grid: tuple[int, ...], target) -> KernelRun:
    _single_threaded_blas()
    chosen = resolve_target(target)
    key = replay.launch_key(func, args, kwargs, grid, chosen.name)
    recording = replay.lookup(key)
    if recording is not None and recording.busy.acquire(blocking=False):      # busy: another thread replays it
        try:
            wrapped, trace = recording.replay(lambda allocs: _Arguments(None, args, kwargs, func, allocs))
            outputs = wrapped.convert_outputs(recording.result)
            wrapped.write_back()
        finally:
            recording.busy.release()
        return _finish(outputs, trace)
    taping = key is not None
    run = context.Launch(chosen, getattr(func, "__name__", "kernel"), grid, taping=taping)
    context.push(run)
    set_taping(taping)
    try:
        with np.errstate(all="ignore"):      # hardware lets inf/NaN flow; so do we, silently
            wrapped = _Arguments(run, args, kwargs, func)
            program_ids = [tuple(p) for p in itertools.product(*(range(n) for n in grid))]
            if len(program_ids) > 1:      # instances that may meet (sendrecv, core_barrier): a gang
                results = Gang(run, program_ids, lambda: func(*wrapped.args, **wrapped.kwargs)).run()
            else:
                run.start_instance(program_ids[0])
                results = [func(*wrapped.args, **wrapped.kwargs)]
            outputs = wrapped.convert_outputs(results[0])
            wrapped.write_back()
    finally:
        set_taping(-taping)
        context.pop(run)
    trace = run.finish()
    if key is not None:
        replay.store(key, replay.Recording(run, wrapped.allocations, results[0], trace))
    return _finish(outputs, trace)


def _finish(outputs, trace: Trace) -> KernelRun:
    for traces in _recorders:
        traces.append(trace)
    return KernelRun(outputs, trace)


def _normalise_grid(grid) -> tuple[int, ...]:
    if isinstance(grid, (tuple, list)):
        return tuple(int(g) for g in grid)
    return (int(grid),)


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


_TORCH_VIEWS = {"torch.bfloat16": ("int16", ml_dtypes.bfloat16), "torch.float8_e4m3fn": ("uint8", ml_dtypes.float8_e4m3fn),
                "torch.float8_e5m2": ("uint8", ml_dtypes.float8_e5m2)}


class _Arguments:
    """Kernel arguments as HBM tensors, plus what is needed to hand results back."""

    def __init__(self, run: context.Launch | None, args: tuple, kwargs: dict, func: Callable,
                 recorded: list[Allocation] | None = None):
        """`recorded`: a replay's argument allocations, which take the new arguments' memory in the same order."""
        self.run = run
        self.allocations: list[Allocation] = []
        self._recorded = iter(recorded) if recorded is not None else None
        self.uses_torch = any(_is_torch(v) for v in itertools.chain(args, kwargs.values()))
        self.copies: list[tuple[Any, np.ndarray]] = []
        self.originals: dict[int, Any] = {}
        names = getattr(getattr(func, "__code__", None), "co_varnames", ())
        self.args = tuple(self._wrap(v, names[i] if i < len(names) else f"arg{i}") for i, v in enumerate(args))
        self.kwargs = {k: self._wrap(v, k) for k, v in kwargs.items()}

    def _wrap(self, value, name: str):
        if isinstance(value, (tuple, list)) and any(_is_torch(v) or isinstance(v, np.ndarray) for v in value):
            return type(value)(self._wrap(v, f"{name}[{i}]") for i, v in enumerate(value))
        if _is_torch(value):
            array, source = self._torch_array(value)
        elif isinstance(value, np.ndarray):
            array, source = value, value
        else:
            return value
        if array.ndim == 0:
            return array.item()
        if not array.flags.c_contiguous:
            contiguous = np.ascontiguousarray(array)
            self.copies.append((source, contiguous))
            array = contiguous
        storage, dtype = to_storage_array(array)
        raw = storage.reshape(-1).view(np.uint8)
        if self._recorded is not None:
            alloc = next(self._recorded)
            alloc.raw = raw
        else:
            alloc = Allocation(self.run.memory.next_id(), SHARED_HBM, raw, dtype, tuple(array.shape), name=name)
            self.allocations.append(alloc)
        self.originals[alloc.id] = value
        return row_major_tensor(alloc, name)

    def _torch_array(self, value):
        detached = value.detach()
        if detached.device.type != "cpu":
            raise NkiUsageError(f"kernel arguments must be CPU tensors; got one on {detached.device}")
        contiguous = detached.contiguous()
        view = _TORCH_VIEWS.get(str(contiguous.dtype))
        if view is None:
            array = contiguous.numpy()
        else:
            import torch
            array = contiguous.view(getattr(torch, view[0])).numpy().view(view[1])
        if not detached.is_contiguous():
            self.copies.append((value, array))
        return array, value

    def write_back(self) -> None:
        """Inputs that had to be copied (non-contiguous) receive what the kernel wrote."""
        for original, array in self.copies:
            if _is_torch(original):
                original.detach().copy_(self._to_torch(array))
            else:
                original[...] = array

    def convert_outputs(self, result):
        if isinstance(result, NkiTensor):
            return self._output(result)
        if isinstance(result, (tuple, list)):
            return type(result)(self.convert_outputs(r) for r in result)
        if isinstance(result, dict):
            return {k: self.convert_outputs(v) for k, v in result.items()}
        return result

    def _output(self, t: NkiTensor):
        if t.alloc.kind != "hbm":
            raise NkiUsageError(f"kernel outputs must be HBM tensors (nl.shared_hbm); {t.name or 'a tensor'} "
                                f"{t.shape} is in {t.alloc.kind.upper()}")
        original = self.originals.get(t.alloc.id)
        if original is not None and t.shape == t.alloc.shape and t.offset == 0:
            return original
        array = t.np()
        if t.dtype.name == "bool_":
            array = array.view(np.bool_)
        return self._to_torch(array) if self.uses_torch else array

    @staticmethod
    def _to_torch(array: np.ndarray):
        import torch
        contiguous = np.ascontiguousarray(array)
        for torch_name, (carrier, np_type) in _TORCH_VIEWS.items():
            if contiguous.dtype == np.dtype(np_type):
                carried = torch.from_numpy(contiguous.view(getattr(np, carrier)))
                return carried.view(getattr(torch, torch_name.split(".")[1]))
        return torch.from_numpy(contiguous)
