"""Exceptions raised by the interpreter.

Every hardware-rule violation is a `HardwareLimitError` whose message names the
instruction, the rule, the offending values and the kernel source line, so a
failing kernel can be fixed without reading interpreter internals.
"""

from __future__ import annotations


class NkiCpuError(Exception):
    """Base class of every error the interpreter raises on purpose."""


class HardwareLimitError(NkiCpuError):
    """A kernel broke a documented hardware rule of the selected target."""

    def __init__(self, instruction: str, limit: str, values: str, source: tuple[str, int]):
        self.instruction = instruction
        self.limit = limit
        self.values = values
        self.source = source
        super().__init__(f"{instruction}: {limit}; got {values} (kernel {source[0]}:{source[1]})")


class NkiUsageError(NkiCpuError, ValueError):
    """A call that the NKI API itself rejects (bad argument, shape mismatch, bad index)."""


class NkiIndexError(NkiCpuError, IndexError):
    """An index or slice outside a tensor's bounds."""


class NkiUnsupportedError(NkiCpuError, NotImplementedError):
    """An NKI API that this interpreter does not implement."""

    def __init__(self, api: str, detail: str = ""):
        self.api = api
        suffix = f": {detail}" if detail else ""
        super().__init__(f"{api} is not supported by the nki_cpu interpreter{suffix}")
