"""`nki.compiler` (ncc) as Beta 1 kernels use it: allocation helpers and kernel decorators.

Mirrors aws-neuron-sdk nki/api/nki.compiler (sbuf/psum `alloc`, `mod_alloc`, `auto_alloc`;
`skip_middle_end_transformations`, `enable_stack_allocator`, `force_auto_alloc`). Direct
allocation only places tensors on hardware; here every tensor is its own array, so the helpers
return the buffer itself and capacity is checked by live range like any auto-allocated tensor
(`memory.MemoryTracker`). Block dimensions before the partition dim are not interpreted.
"""

from __future__ import annotations

from types import SimpleNamespace

from .memory import PSUM, SBUF, Buffer


def _allocator(buffer: Buffer) -> SimpleNamespace:
    def alloc(func) -> Buffer:
        return buffer

    def mod_alloc(base_addr=0, *, base_partition=0, num_par_tiles=(), num_free_tiles=()) -> Buffer:
        return buffer

    def auto_alloc() -> Buffer:
        return buffer

    return SimpleNamespace(alloc=alloc, mod_alloc=mod_alloc, auto_alloc=auto_alloc)


sbuf = _allocator(SBUF)
psum = _allocator(PSUM)


def _unchanged(func=None, **_options):
    """A kernel decorator that only steers the compiler: the kernel runs as written."""
    if func is None:
        return lambda f: f
    return func


skip_middle_end_transformations = _unchanged
enable_stack_allocator = _unchanged
force_auto_alloc = _unchanged
