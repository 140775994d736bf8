"""The program instances of an SPMD grid as a gang of cooperating threads, so they can exchange data.

One instance runs at a time, in program-id order. Each runs until it ends or reaches a rendezvous
(`nisa.sendrecv`, `nisa.core_barrier`), where it waits. Once every instance has reached the rendezvous, it completes:
the data moves and each instance's instruction is traced, in program-id order, after everything
the instances did before it. Then the instances resume in order, each until its next rendezvous
or its end. A grid without rendezvous therefore runs, and traces, exactly as one instance after
another. Instances that disagree (one ends while another waits, or they wait at different kinds of
rendezvous) are an error, as the hardware would hang.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from .context import InstanceState, Launch
from .errors import NkiUsageError


class _Abort(BaseException):
    """Unwinds an instance's thread after another instance failed."""


class Rendezvous:
    """What one instance brings to a rendezvous. `kind` must agree between instances; the last one to
    arrive calls `complete(gang, meetings)` with every instance's Rendezvous, in program-id order."""

    kind = "rendezvous"

    def describe(self) -> str:
        return self.kind

    def complete(self, gang: "Gang", meetings: list["Rendezvous"]) -> None:
        raise NotImplementedError


class Gang:
    def __init__(self, launch: Launch, program_ids: list[tuple[int, ...]], body: Callable[[], Any]):
        self.launch = launch
        self.program_ids = program_ids
        self.body = body
        self.states: list[InstanceState] = [launch.new_instance(pid) for pid in program_ids]
        self._cond = threading.Condition()
        self._turn = 0
        self._running: int | None = None
        self._waiting: dict[int, Rendezvous] = {}
        self._results: dict[int, Any] = {}
        self._error: BaseException | None = None

    def run(self) -> list:
        """Run every instance; their return values in program-id order."""
        self.launch.gang = self
        threads = [threading.Thread(target=self._instance, args=(k,), daemon=True, name=f"nki-program-{k}")
                   for k in range(1, len(self.program_ids))]
        try:
            for thread in threads:
                thread.start()
            self._instance(0)     # on the launching thread: one thread fewer to start and to wait for
            for thread in threads:
                thread.join()
        finally:
            self.launch.gang = None
        if self._error is not None:
            raise self._error
        return [self._results[k] for k in range(len(self.program_ids))]

    # --- called by instructions, on the running instance's thread ---------------------------------------

    @property
    def size(self) -> int:
        return len(self.program_ids)

    @property
    def index(self) -> int:
        """Index (in program-id order) of the running instance."""
        return self._running

    def switch_to(self, k: int) -> None:
        """Let instance k's state be the launch's (for tracing a rendezvous's instructions)."""
        self.launch.leave(self.states[self._current])
        self.launch.enter(self.states[k])
        self._current = k

    def meet(self, meeting: Rendezvous) -> None:
        """Wait at a rendezvous until every instance has reached it and it has completed."""
        k = self._running
        with self._cond:
            self._waiting[k] = meeting
            self._pass_turn(k)
            self._wait_for_turn(k)

    # --- internals ----------------------------------------------------------------------------------------

    def _instance(self, k: int) -> None:
        with np.errstate(all="ignore"):      # per thread; hardware lets inf/NaN flow
            try:
                with self._cond:
                    self._wait_for_turn(k)
                result = self.body()
            except _Abort:
                return
            except BaseException as error:       # noqa: BLE001 - handed to the launching thread
                with self._cond:
                    self._fail(error)
                return
            with self._cond:
                self._results[k] = result
                try:
                    self._pass_turn(k)
                except BaseException as error:   # noqa: BLE001
                    self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._cond.notify_all()

    def _wait_for_turn(self, k: int) -> None:
        while self._turn != k and self._error is None:
            self._cond.wait()
        if self._error is not None:
            raise _Abort()
        self.launch.enter(self.states[k])
        self._running = self._current = k

    def _pass_turn(self, k: int) -> None:
        """Instance k stops (ended or waiting): the next live instance runs, or the round completes."""
        self.launch.leave(self.states[k])
        self._running = None
        later = [j for j in range(k + 1, self.size) if j not in self._results]
        if later:
            self._turn = later[0]
        else:
            self._complete_round()
        self._cond.notify_all()

    def _complete_round(self) -> None:
        if not self._waiting:                    # every instance has ended
            self._turn = self.size
            return
        if len(self._waiting) + len(self._results) != self.size:
            raise AssertionError("gang bookkeeping")   # pragma: no cover
        if self._results:
            ended = sorted(self._results)
            waiting = sorted(self._waiting)
            raise NkiUsageError(
                f"program instances {ended} ended while {waiting} wait at {self._waiting[waiting[0]].describe()}: "
                f"every instance of the grid must reach the same rendezvous (the hardware would hang)")
        meetings = [self._waiting[k] for k in range(self.size)]
        kinds = {m.kind for m in meetings}
        if len(kinds) > 1:
            raise NkiUsageError(f"program instances wait at different rendezvous: "
                                f"{', '.join(m.describe() for m in meetings)}")
        self._current = self.size - 1
        self.launch.enter(self.states[self._current])
        try:
            meetings[0].complete(self, meetings)
        finally:
            self.launch.leave(self.states[self._current])
        self._waiting.clear()
        self._turn = 0
