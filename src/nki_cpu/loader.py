"""Loading a kernel from any file path."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys


def load_kernel(path: str | os.PathLike, name: str):
    """Import the module at `path` (installing the `nki` shim first) and return its attribute `name`."""
    from .install import install
    install()
    path = os.path.abspath(os.fspath(path))
    module_name = "nki_cpu_kernel_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a kernel module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"{path} defines no {name!r}") from None
