"""The cleanup worker: one background thread that calls a store's `prune()`.

Guarantees, each tested in tests/test_worker.py:
1. However many threads call `start` at once, at most one worker thread runs: the
   alive-check and the start happen under `_lock` (the first seed did them unlocked).
2. `stop` is prompt (the thread waits on an Event, not in `sleep`), safe to call twice,
   and safe from the worker thread itself.
3. It waits on the store's clock (`runbound.model.clock.sleep`), so a virtual clock drives it and
   a checker can run it as a step of its own.
4. A sweep that raises does not kill the worker. The wait doubles after each failure, up
   to `max_backoff` intervals, and failures are logged only at the 1st, 2nd, 4th, 8th...
   in a row, so a persistent fault logs O(log n) lines, not one per interval.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

from runbound.model.clock import Clock, sleep

log = logging.getLogger("runbound.worker")

_names = itertools.count(1)


class CleanupWorker:
    def __init__(self, sweep: Callable[[], object], clock: Clock, *, name: str | None = None,
                 max_backoff: int = 32, logger: logging.Logger = log) -> None:
        self._sweep = sweep
        self._clock = clock
        self.name = name or f"runbound-cleanup-{next(_names)}"
        self.max_backoff = max_backoff
        self._log = logger
        # _lock guards _thread and _stop: the check "is one running?" and the start of a
        # new one are one atomic step.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, interval: float) -> bool:
        """Start the worker; False (and nothing started) if one is already running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            # A fresh Event per thread: a thread still winding down from an earlier stop
            # keeps its own set Event and cannot be revived by this start.
            self._stop = threading.Event()
            thread = threading.Thread(target=self.run, args=(interval, self._stop),
                                      name=self.name, daemon=True)
            self._thread = thread
            thread.start()
            return True

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the worker and wait up to `timeout` for it; True iff one was running."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is None:
            return False
        if thread is not threading.current_thread():
            thread.join(timeout)
        return True

    def alive(self) -> int:
        """How many threads of this worker are alive, counted from the interpreter's own
        thread list so that a duplicate thread is seen even when no handle remembers it."""
        return sum(1 for t in threading.enumerate() if t.name == self.name and t.is_alive())

    def run(self, interval: float, stop: threading.Event) -> None:
        """The loop: sleep `interval` on the store's clock, sweep, until `stop` is set."""
        failures = 0
        delay = interval
        while not sleep(self._clock, delay, stop):
            try:
                result = self._sweep()
            except Exception:
                failures += 1
                delay = interval * min(2 ** failures, self.max_backoff)
                if failures & (failures - 1) == 0:  # 1, 2, 4, 8, ...
                    self._log.exception("cleanup sweep failed (%d in a row); next try in "
                                        "%.3gs", failures, delay)
                continue
            if failures:
                self._log.warning("cleanup sweep recovered after %d failures", failures)
            failures, delay = 0, interval
            if result:
                self._log.info("cleanup sweep: %s", result)


class WorkerMixin:
    """The worker half of the store interface, for a store that keeps a CleanupWorker as
    `_worker` (its `start_cleanup_worker` is its own: it must refuse on a closed store)."""

    _worker: CleanupWorker

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self._worker.stop(timeout)

    def cleanup_workers_alive(self) -> int:
        return self._worker.alive()
