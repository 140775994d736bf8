"""Where compiled models live and when they can be reused.

A build (the baseline or the job's kernels) compiles into `<compiled_root>/<key>/`: `traced/` (NxDI's
`model.pt` and `neuron_config.json`), `work/` (NxDI's BASE_COMPILE_WORK_DIR: per sub-model and bucket the
HLOs and NEFFs, `<tag>/_tp<rank>_bk<bucket>/`) and `compile.log`. The key hashes everything that changes
the compiled graph: model, workload shapes, TP, target and compiler settings, kernel choices and params,
and the source of the device model and of the kernels it embeds. Switching variants switches directories;
coming back reuses the old one.

neuronx-cc also caches NEFFs by graph hash in its own cache (NEURON_COMPILE_CACHE_URL), failed compilations
included: a later compile of the same graph logs "Got a cached failed neff at <path>" and fails. Those
entries are found in the log and removed (only inside the configured cache), then the compile is retried."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from model.neuron.bundle import MODEL_MODULE, closure, kernel_modules
from pipeline.identity import digest

TEE_DRAIN_S = 10.0  # how long the compile log's tee may take to drain after the compile returns
COMPLETE = "COMPLETE"  # written after compile() returns; a directory without it is rebuilt
log = logging.getLogger(__name__)
POISONED = re.compile(r"Got a cached failed neff at (\S+?\.neff)")


@dataclass(frozen=True)
class BuildDirs:
    root: Path

    @property
    def traced(self) -> Path:
        return self.root / "traced"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def log(self) -> Path:
        return self.root / "compile.log"

    @property
    def complete(self) -> bool:
        return (self.root / COMPLETE).exists() and (self.traced / "model.pt").exists()

    def mark_complete(self) -> None:
        (self.root / COMPLETE).write_text("")

    def traced_path(self) -> str:
        """NxDI concatenates file names onto compiled_model_path, so it must end with a slash
        (models/application_base.py, normalize_path)."""
        return f"{self.traced}/"


def compile_key(conf, choices: dict[str, str], params: dict[str, dict], buckets: list[int]) -> str:
    """The compile-relevant part of a config, for one set of kernel choices (the job's or all-baseline)."""
    neuron = conf.platform.neuron
    sources = closure([MODEL_MODULE, *kernel_modules(choices)])
    return digest({
        "model": dataclasses.asdict(conf.model),
        "workload": {"seq_len": conf.workload.seq_len, "batch_size": conf.workload.batch_size, "buckets": buckets},
        "parallel": dataclasses.asdict(conf.parallel),
        "target": conf.platform.target,
        "compiler": {"lnc": neuron.logical_nc_config, "auto_cast": conf.compiler.auto_cast, "mpa": conf.compiler.mpa},
        "kernels": choices, "params": params,
        "sources": {name: digest(text) for name, text in sources.items()},
    })


def poisoned_entries(log_text: str, cache_root: Path) -> list[Path]:
    """The cache entries (a NEFF's directory) a compile log reports as cached failures, inside cache_root."""
    root = cache_root.resolve()
    entries = []
    for match in POISONED.finditer(log_text):
        entry = Path(match.group(1)).resolve().parent
        if root in entry.parents and entry not in entries:
            entries.append(entry)
    return entries


def purge(entries: list[Path]) -> None:
    for entry in entries:
        shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """stdout and stderr of this process and its children (neuronx-cc runs as a subprocess), at the
    file-descriptor level, appended to `path` and still shown on the console (a compile can take long)."""
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.dup(1), os.dup(2)
    read_end, write_end = os.pipe()

    def tee() -> None:
        with path.open("ab") as log:
            while chunk := os.read(read_end, 65536):
                log.write(chunk)
                log.flush()
                os.write(console[0], chunk)

    thread = threading.Thread(target=tee, name="compile-log", daemon=True)
    thread.start()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(console[0], 1)  # closes our write ends of the pipe: the tee sees end of file
        os.dup2(console[1], 2)
        thread.join(TEE_DRAIN_S)
        if thread.is_alive():  # a child that outlived the compile still holds the pipe: leave the tee to it
            log.warning("a process started by the compile still writes to %s", path)
        else:
            os.close(read_end)
            os.close(console[0])
        os.close(console[1])
