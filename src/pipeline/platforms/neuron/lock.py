"""One job per chip at a time. NxDI writes fixed paths (BASE_COMPILE_WORK_DIR defaults to /tmp/nxd_model),
the contest harness relies on its second compile being the one `find_hlos()` reads, and a loaded model
holds the NeuronCores: two jobs on one chip corrupt each other (hardware-and-model.md §8.4). An exclusive
`flock` on one file, held from the first device stage to the end of the job; the holder writes who it is."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


class DeviceBusy(RuntimeError):
    """Another job held the device lock for longer than the timeout."""


class DeviceLock:
    def __init__(self, path: str | Path, timeout_s: float, poll_s: float = 2.0):
        self.path, self.timeout_s, self.poll_s = Path(path), timeout_s, poll_s
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self, holder: dict[str, str]) -> None:
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        deadline = time.monotonic() + self.timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    log.info("device busy: waiting for the lock %s held by %s", self.path, self.holder())
                    announced = True
                if time.monotonic() >= deadline:
                    handle.close()
                    raise DeviceBusy(
                        f"the device lock {self.path} is held by {self.holder()} for more than {self.timeout_s:.0f} s"
                    ) from None
                time.sleep(self.poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), **holder}))
        handle.flush()
        self._handle = handle

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "an unknown process"
        except OSError:
            return "an unknown process"

    def release(self) -> None:
        if self._handle is None:
            return
        self._handle.truncate(0)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
