"""Serves modules embedded in the single-file submission as one private package. Their source goes into
`linecache` under the module's file name, because NKI's tracer reads a kernel's source (inspect.getsource)
and there is no file to read. This module's source is copied into the exported file verbatim."""
import importlib.abc
import importlib.util
import linecache
import sys


class BundleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package, sources):
        self.package = package
        self.sources = dict(sources)  # dotted name under the package -> source text
        self.packages = {package}
        for name in self.sources:
            parts = name.split(".")
            self.packages |= {".".join([package, *parts[:i]]) for i in range(1, len(parts))}

    def _relative(self, fullname):
        prefix = self.package + "."
        return fullname[len(prefix):] if fullname.startswith(prefix) else None

    def filename(self, relative):
        return f"<{self.package}/{relative.replace('.', '/')}.py>"

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.packages:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        relative = self._relative(fullname)
        if relative in self.sources:
            return importlib.util.spec_from_loader(fullname, self, origin=self.filename(relative))
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ in self.packages:
            module.__path__ = []
            return
        relative = self._relative(module.__name__)
        source, filename = self.sources[relative], self.filename(relative)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(source, filename, "exec"), module.__dict__)

    def get_source(self, fullname):
        return self.sources.get(self._relative(fullname))


def install_bundle(package, sources):
    """Put the bundle's finder first on sys.meta_path (once per package)."""
    if not any(isinstance(f, BundleFinder) and f.package == package for f in sys.meta_path):
        sys.meta_path.insert(0, BundleFinder(package, sources))
