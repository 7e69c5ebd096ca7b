"""The one clock seam, and the virtual clock of the checks.

A store takes `clock: Callable[[], float]` and reads it once per call. Its cleanup worker
waits through `sleep(clock, seconds, stop)`, never `time.sleep` or a bare `Event.wait`:
with a real clock that is `stop.wait(seconds)`; with a `VirtualClock` it is the clock's
own `sleep`, so the checks move time, the worker wakes exactly when its interval has
passed *on the store's clock*, and `settle()` tells them when it has swept and gone back to
sleep. That is what lets a checker run a store's own worker as a step of its machine,
deterministically, without any hook in the store.

The virtual clock can also misbehave on purpose (`step`, `fault`): a reading that goes
back, stands still, jumps, or is NaN or infinite. What a store must do then is rule C1 of
`specs/lifecycle.md`.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]

#: how often a sleeper on a virtual clock looks at its stop event (real seconds). Only a
#: latency: a stopped worker notices within this; nothing is decided by it.
_POLL = 0.002


def waits_elsewhere(thread: threading.Thread) -> bool:
    """True iff `thread` is blocked in one of `threading`'s waits (an Event, a Condition)
    and not inside a `VirtualClock.sleep`: a worker sleeping on real time. Read from the
    thread's own stack (`sys._current_frames`), not from anything it says."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code.co_filename != threading.__file__ \
            or frame.f_code.co_name not in ("wait", "_wait_for_tstate_lock"):
        return False
    while frame is not None:
        if frame.f_code is VirtualClock.sleep.__code__:
            return False
        frame = frame.f_back
    return True


def sleep(clock: Clock, seconds: float, stop: threading.Event) -> bool:
    """Wait `seconds` on `clock`, or until `stop` is set; True iff stopped. The worker
    seam of every store: a clock with a `sleep` of its own (a `VirtualClock`) is waited
    on, any other clock is taken to run in real time."""
    own = getattr(clock, "sleep", None)
    if callable(own):
        return bool(own(seconds, stop))
    return stop.wait(seconds)


class VirtualClock:
    """A clock that moves only when told. Thread-safe.

    `time` is the clock's own time, which sleepers wait on; a reading (`clock()`) is that
    time unless a fault is set (`fault(value)`: every reading returns `value`, say NaN,
    until `fault(None)`; moving the clock does not clear it). `step(seconds)` moves time
    by any finite amount, backwards too.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._time = start
        self._fault: float | None = None
        self._cond = threading.Condition()
        #: guarded by _cond: thread -> the time it sleeps until
        self._sleepers: dict[threading.Thread, float] = {}
        #: guarded by _cond: threads woken by time that have not gone back to sleep yet
        self._woken: set[threading.Thread] = set()
        #: guarded by _cond: while True, a sleeper told to stop waits here before it
        #: returns (`hold_exits`), so a checker can see whether a stop waited for it
        self._gate = False
        self._at_gate: set[threading.Thread] = set()

    def __call__(self) -> float:
        with self._cond:
            return self._time if self._fault is None else self._fault

    @property
    def time(self) -> float:
        with self._cond:
            return self._time

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (finite, >= 0)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"advance moves forward by a finite amount, got {seconds!r}")
        return self.step(seconds)

    def step(self, seconds: float) -> float:
        """Move time by `seconds`, backwards if negative."""
        if not math.isfinite(seconds):
            raise ValueError(f"step needs a finite amount, got {seconds!r}")
        with self._cond:
            self._time += seconds
            for thread, until in self._sleepers.items():
                if until <= self._time:
                    self._woken.add(thread)
            self._cond.notify_all()
            return self._time

    def fault(self, reading: float | None) -> None:
        """Every reading returns `reading` (NaN, an infinity, a value in the past) until
        `fault(None)`; sleepers keep the clock's own time."""
        with self._cond:
            self._fault = reading

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep until the clock's time has moved `seconds` on, or `stop` is set."""
        me = threading.current_thread()
        with self._cond:
            self._woken.discard(me)
            until = self._time + seconds
            self._sleepers[me] = until
            self._cond.notify_all()  # a settle() may be waiting for this thread
            try:
                while not stop.is_set():
                    if self._time >= until:
                        self._woken.add(me)
                        return False
                    self._cond.wait(_POLL)
                self._at_gate.add(me)
                self._cond.notify_all()
                while self._gate:
                    self._cond.wait(_POLL)
                return True
            finally:
                self._at_gate.discard(me)
                del self._sleepers[me]
                self._cond.notify_all()

    def settle(self, threads: Iterable[threading.Thread] = (), timeout: float = 10.0,
               elsewhere: Callable[[threading.Thread], bool] | None = None) -> bool:
        """Wait until nothing the clock woke is still running: every thread woken by a
        move of time has gone back to sleep or ended, no sleeper is due, and each of
        `threads` is asleep on this clock or ended. False if that did not happen within
        `timeout` real seconds (a guard against a thread that never sleeps on the clock,
        not a measure: a settled clock is decided by the threads, not by the time).
        `elsewhere(thread)`: True for a watched thread seen waiting on something else
        than this clock (it is not waited for)."""
        watched = list(threads)
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                self._woken = {t for t in self._woken if t.is_alive()}
                due = any(until <= self._time for until in self._sleepers.values())
                waiting = [t for t in watched if t.is_alive() and t not in self._sleepers
                           and not (elsewhere is not None and elsewhere(t))]
                if not self._woken and not due and not waiting:
                    return True
                if time.monotonic() > end:
                    return False
                self._cond.wait(_POLL)

    def hold_exits(self) -> None:
        """From now on, a sleeper told to stop waits at a gate before it returns, until
        `release_exits()`: a thread held there is alive, so a `stop` that returns before
        its worker has ended is seen to, every time, not only when the timing is bad."""
        with self._cond:
            self._gate = True

    def release_exits(self) -> None:
        with self._cond:
            self._gate = False
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until `predicate()` (evaluated under the clock's lock, so it may read
        `at_gate`); False after `timeout` real seconds, a guard only."""
        end = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if time.monotonic() > end:
                    return False
                self._cond.wait(_POLL)
            return True

    @property
    def at_gate(self) -> int:
        """Sleepers told to stop and held by `hold_exits` (read under `wait_for`)."""
        return len(self._at_gate)

    def sleepers(self) -> int:
        with self._cond:
            return len(self._sleepers)

    def __repr__(self) -> str:
        return f"VirtualClock({self._time!r})"
