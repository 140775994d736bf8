"""Making `import nki` (and the legacy `import neuronxcc.nki`) resolve to the interpreter.

PyPI's `nki` is a placeholder whose import raises ImportError: it is not genuine, and the
interpreter takes its place. A package that imports and provides `jit`, `language` and `isa`
is genuine and is left alone. Beta 1 kernels import `neuronxcc.nki`, `.language`, `.isa`: these
resolve to the same interpreter unless a real `neuronxcc` (the Neuron compiler) is importable,
in which case it is left alone as well. The stand-in `neuronxcc` carries `__nki_cpu__ = True`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass

SHIM_MODULES = ("nki", "nki.language", "nki.isa", "nki.isa.constants", "nki.typing", "nki.compiler")
LEGACY_MODULES = ("neuronxcc", "neuronxcc.nki", "neuronxcc.nki.language", "neuronxcc.nki.isa",
                  "neuronxcc.nki.typing", "neuronxcc.nki.compiler")


@dataclass(frozen=True)
class InstallResult:
    installed: bool       # True when `import nki` now gives the interpreter
    provider: str         # "nki_cpu" or "genuine"
    detail: str

    def __bool__(self) -> bool:
        return self.installed


def _is_shim(module) -> bool:
    return bool(getattr(module, "__nki_cpu__", False))


def _is_genuine(module) -> bool:
    if module is None or _is_shim(module) or not hasattr(module, "jit"):
        return False
    try:
        importlib.import_module("nki.language")
        importlib.import_module("nki.isa")
    except ImportError:
        return False
    return True


def _forget_nki() -> None:
    for name in [n for n in sys.modules if n == "nki" or n.startswith("nki.")]:
        del sys.modules[name]


def install() -> InstallResult:
    """Register the interpreter as `nki` unless a genuine NKI package is importable."""
    loaded = sys.modules.get("nki")
    if _is_shim(loaded):
        return InstallResult(True, "nki_cpu", "already installed")
    if _is_genuine(loaded):
        return InstallResult(False, "genuine", f"genuine nki already imported from {getattr(loaded, '__file__', '?')}")
    reason = "no nki package found"
    try:
        found = importlib.util.find_spec("nki") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        try:
            module = importlib.import_module("nki")
        except ImportError as exc:
            reason = f"the installed nki is a placeholder ({exc})"
        else:
            if _is_genuine(module):
                return InstallResult(False, "genuine", f"genuine nki found at {getattr(module, '__file__', '?')}")
            reason = "the installed nki lacks jit/language/isa"
        _forget_nki()
    _register()
    return InstallResult(True, "nki_cpu", reason)


def uninstall() -> None:
    """Remove the interpreter's `nki` (and stand-in `neuronxcc`) modules; genuine ones are never touched."""
    if not _is_shim(sys.modules.get("nki")):
        return
    for name in SHIM_MODULES:
        sys.modules.pop(name, None)
    if _is_shim(sys.modules.get("neuronxcc")):
        for name in LEGACY_MODULES:
            sys.modules.pop(name, None)


def _register() -> None:
    from . import compiler, facade, isa, kernel_typing, language
    from .isa import constants
    sys.modules.update({
        "nki": facade, "nki.language": language, "nki.isa": isa, "nki.isa.constants": constants,
        "nki.typing": kernel_typing, "nki.compiler": compiler,
    })
    if not _neuronxcc_importable():
        from . import legacy
        neuronxcc = types.ModuleType("neuronxcc")
        neuronxcc.__nki_cpu__ = True
        neuronxcc.nki = legacy.NKI
        sys.modules.update({
            "neuronxcc": neuronxcc, "neuronxcc.nki": legacy.NKI, "neuronxcc.nki.language": legacy.LANGUAGE,
            "neuronxcc.nki.isa": isa, "neuronxcc.nki.typing": kernel_typing, "neuronxcc.nki.compiler": compiler,
        })


def _neuronxcc_importable() -> bool:
    """A real Neuron compiler package (not an earlier stand-in) can be imported."""
    loaded = sys.modules.get("neuronxcc")
    if loaded is not None:
        return not _is_shim(loaded)
    try:
        return importlib.util.find_spec("neuronxcc") is not None
    except (ImportError, ValueError):
        return False
