"""Making `import nki` resolve to the interpreter, unless a genuine NKI package is installed.

PyPI's `nki` is a placeholder whose import raises ImportError: it is not genuine, and the
interpreter takes its place. A package that imports and provides `jit`, `language` and `isa`
is genuine and is left alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass

SHIM_MODULES = ("nki", "nki.language", "nki.isa", "nki.isa.constants", "nki.typing")


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


def install(alias_neuronxcc_typing: bool = False) -> InstallResult:
    """Register the interpreter as `nki` unless a genuine NKI package is importable.

    alias_neuronxcc_typing: also make `import neuronxcc.nki.typing` work (router_topk still imports
    it) when no real neuronxcc is importable. Opt-in, because a stand-in `neuronxcc` module would
    make code that probes for the Neuron compiler believe it is installed.
    """
    loaded = sys.modules.get("nki")
    if _is_shim(loaded):
        if alias_neuronxcc_typing:
            _alias_neuronxcc_typing()
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
    if alias_neuronxcc_typing:
        _alias_neuronxcc_typing()
    return InstallResult(True, "nki_cpu", reason)


def uninstall() -> None:
    """Remove the interpreter's `nki` modules; a genuine `nki` is never touched."""
    if not _is_shim(sys.modules.get("nki")):
        return
    for name in SHIM_MODULES:
        sys.modules.pop(name, None)


def _register() -> None:
    from . import facade, isa, kernel_typing, language
    from .isa import constants
    sys.modules.update({
        "nki": facade, "nki.language": language, "nki.isa": isa, "nki.isa.constants": constants,
        "nki.typing": kernel_typing,
    })


def _alias_neuronxcc_typing() -> None:
    if "neuronxcc.nki.typing" in sys.modules:
        return
    try:
        importlib.import_module("neuronxcc.nki.typing")
        return
    except ImportError:
        pass
    from . import kernel_typing
    for name in ("neuronxcc", "neuronxcc.nki"):
        stand_in = types.ModuleType(name)
        stand_in.__nki_cpu__ = True
        sys.modules[name] = stand_in
    sys.modules["neuronxcc.nki"].typing = kernel_typing
    sys.modules["neuronxcc"].nki = sys.modules["neuronxcc.nki"]
    sys.modules["neuronxcc.nki.typing"] = kernel_typing
