"""The next item's work on a second thread while the caller uses the current one.

The accuracy stage runs the references (torch on the CPU) of prompt i and i + 1 while the candidate (the interpreter,
or a device) makes its first generation of prompt i, which hides most of the reference's time on a 2-core machine. Meanwhile torch's
intra-op threads are halved, so the two threads' OpenMP teams do not outnumber the cores (teams that do spin-wait on
each other). torch's CPU kernels and ours split output rows between threads, not sums, so the results do not depend
on the thread count; tests/unit/test_ahead.py checks the reference's logits bit for bit.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


class OneAhead(Generic[Item, Result]):
    """`with OneAhead(work, items) as results:` iterates work(item) in order, at most one item ahead of the caller.
    An exception in the work is raised where its result is taken. Leaving the block early stops the thread after
    the item it is working on."""

    def __init__(self, work: Callable[[Item], Result], items: Sequence[Item]):
        self._work, self._items = work, list(items)
        self._results: queue.Queue = queue.Queue()
        self._permits = threading.Semaphore(2)      # the caller's current item and the next one
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="one-ahead", daemon=True)
        self._threads = 0

    def __enter__(self) -> Iterator[Result]:
        self._threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self._threads // 2))
        self._thread.start()
        return self._iterate()

    def __exit__(self, *exc) -> None:
        self._stopped = True
        self._permits.release()
        torch.set_num_threads(self._threads)
        if exc[0] is None:
            self._thread.join()

    def _iterate(self) -> Iterator[Result]:
        for index in range(len(self._items)):
            if index:
                self._permits.release()     # the caller is done with the previous item
            ok, value = self._results.get()
            if not ok:
                raise value
            yield value

    def _run(self) -> None:
        for item in self._items:
            self._permits.acquire()
            if self._stopped:
                return
            try:
                self._results.put((True, self._work(item)))
            except BaseException as error:  # noqa: BLE001 - raised on the caller's thread
                self._results.put((False, error))
                return
