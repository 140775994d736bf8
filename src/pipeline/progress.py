"""Progress for long work: throttled log lines (they reach the console and the job's log file alike)."""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("pipeline.progress")


class Progress:
    def __init__(self, label: str, total: int, unit: str = "tokens", interval_s: float = 5.0):
        self.label, self.total, self.unit, self.interval_s = label, max(total, 1), unit, interval_s
        self.done = 0
        self._lock = threading.Lock()     # the accuracy stage advances it from two threads
        self.start = self.last = time.monotonic()
        log.info("%s: 0/%d %s", label, total, unit)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if not (self.done >= self.total or now - self.last >= self.interval_s):
                return
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            log.info(
                "%s: %d/%d %s (%.0f%%), %.0f s elapsed, ~%.0f s left",
                self.label, self.done, self.total, self.unit, 100 * self.done / self.total, elapsed, eta,
            )
