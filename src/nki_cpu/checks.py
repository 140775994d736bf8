"""Locating the kernel line that made a call, and raising errors that name it.

Hardware checks live next to the instructions they guard; this module only provides the
shared vocabulary: `kernel_site()` and the two ways of failing.
"""

from __future__ import annotations

import os
import sys

from .errors import HardwareLimitError, NkiUsageError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_inside: dict[str, bool] = {}


def is_interpreter_file(filename: str) -> bool:
    hit = _inside.get(filename)
    if hit is None:
        hit = os.path.abspath(filename).startswith(_PACKAGE_DIR)
        _inside[filename] = hit
    return hit


def kernel_site() -> tuple[str, int]:
    """(file, line) of the first stack frame outside nki_cpu: the kernel's own code."""
    frame = sys._getframe(1)
    inside = _inside
    while frame is not None:
        filename = frame.f_code.co_filename
        hit = inside.get(filename)
        if hit is None:
            hit = is_interpreter_file(filename)
        if not hit:
            return filename, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


def fail(instruction: str, limit: str, values: str, site: tuple[str, int] | None = None):
    """Raise the HardwareLimitError for a broken hardware rule."""
    raise HardwareLimitError(instruction, limit, values, site or kernel_site())


def usage(instruction: str, message: str, site: tuple[str, int] | None = None):
    """Raise an NkiUsageError for a call the NKI API rejects."""
    where = site or kernel_site()
    raise NkiUsageError(f"{instruction}: {message} (kernel {where[0]}:{where[1]})")
