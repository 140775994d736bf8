"""Loading a kernel from any file path, including a module inside a package of a checkout."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys


def load_kernel(path: str | os.PathLike, name: str):
    """Import the module at `path` (installing the `nki` shim first) and return its attribute `name`.

    A file inside a package (its folder has an `__init__.py`, as nki-library's
    `src/nkilib_src/nkilib/core/embeddings/rope.py`) is imported under its dotted package name with
    the folder above the outermost package on `sys.path`, so its relative imports resolve; a
    loose file (nki-autotune's kernel_library) is imported on its own under a private name.
    """
    from .install import install
    install()
    path = os.path.abspath(os.fspath(path))
    dotted, root = _package_name(path)
    module = _import_in_package(dotted, root) if dotted else _import_file(path)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"{path} defines no {name!r}") from None


def _package_name(path: str) -> tuple[str | None, str]:
    """(dotted module name, folder above the outermost package), or (None, "") for a loose file."""
    folder, stem = os.path.dirname(path), os.path.splitext(os.path.basename(path))[0]
    parts = [stem]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    return (".".join(parts), folder) if len(parts) > 1 else (None, "")


def _import_in_package(dotted: str, root: str):
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(dotted)


def _import_file(path: str):
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
    return module
