"""The cleanup worker: one background thread that calls a store's `prune()`.

Guarantees, each tested in tests/test_worker.py:
1. However many threads call `start` at once, at most one worker thread runs: the
   alive-check and the start happen under `_lock` (the first seed did them unlocked).
2. `stop` is prompt (the thread waits on an Event, not in `sleep`), safe to call twice,
   and safe from the worker thread itself.
3. A sweep that raises does not kill the worker. The wait doubles after each failure, up
   to `max_backoff` intervals, and failures are logged only at the 1st, 2nd, 4th, 8th...
   in a row, so a persistent fault logs O(log n) lines, not one per interval.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("runbound.worker")

_names = itertools.count(1)


class CleanupWorker:
    def __init__(self, sweep: Callable[[], object], *, name: str | None = None,
                 max_backoff: int = 32, logger: logging.Logger = log) -> None:
        self._sweep = sweep
        self.name = name or f"runbound-cleanup-{next(_names)}"
        self.max_backoff = max_backoff
        self._log = logger
        # _lock guards _thread and _stop: the check "is one running?" and the start of a
        # new one are one atomic step.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: called between the alive-check and the start, under the lock: a no-op that a
        #: probe makes a pause, to show the lock closes the race (model/probes.py)
        self.race_window: Callable[[], None] = lambda: None

    def start(self, interval: float) -> bool:
        """Start the worker; False (and nothing started) if one is already running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.race_window()
            # A fresh Event per thread: a thread still winding down from an earlier stop
            # keeps its own set Event and cannot be revived by this start.
            self._stop = threading.Event()
            thread = threading.Thread(target=self.run, args=(interval, self._stop.wait),
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

    def run(self, interval: float, wait: Callable[[float], bool]) -> None:
        """The loop. `wait(seconds)` returns True when the worker must stop; tests pass a
        virtual one to run a simulated hour in a moment."""
        failures = 0
        delay = interval
        while not wait(delay):
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
    `_worker` (its `start_cleanup_worker` is its own: it must refuse on a closed store),
    with the two seams the worker probes use (model/probes.py)."""

    _worker: CleanupWorker

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self._worker.stop(timeout)

    def cleanup_workers_alive(self) -> int:
        return self._worker.alive()

    def set_race_window(self, pause: Callable[[], None]) -> None:
        self._worker.race_window = pause

    def run_worker_loop(self, interval: float, wait: Callable[[float], bool],
                        sweep: Callable[[], object]) -> None:
        """The store's worker loop, in the calling thread, with `wait` for its sleep and
        `sweep` for its prune."""
        CleanupWorker(sweep, name=self._worker.name, max_backoff=self._worker.max_backoff,
                      logger=self._worker._log).run(interval, wait)
