"""Loading NKI kernel modules: they `import nki`, which is the genuine package on Trainium and the
project's CPU interpreter (src/nki_cpu) everywhere else. Kernel modules are imported lazily, so the
registry never needs either."""
from __future__ import annotations

import importlib
from types import ModuleType


def nki_module(name: str) -> ModuleType:
    import nki_cpu

    nki_cpu.install()  # leaves a genuine NKI package in place
    return importlib.import_module(name)
