"""Deterministic probes of the cleanup worker: what no sequence of calls can show.

- `probe_start_race` (I11): two threads call `start_cleanup_worker` together, and the
  store's race window (between its "is one running?" check and its start) is made a
  pause that waits for the other thread, as trio's tests swap in a janky lock. A store
  that checks and starts under one lock makes the second thread wait at the lock, the
  pause times out, and one worker runs; a store that does not starts two, every time.
- `probe_failing_sweeps` (I18): the store's own worker loop runs in this thread over
  one simulated hour at a one-second interval, with a sweep that always raises, and the
  log lines are counted.

Each needs a seam the store offers (`set_race_window`, `run_worker_loop`). A store
without it gets "unknown", never "pass".
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from model.clock import VirtualClock
from model.policy import Policy
from model.protocol import StoreFactory

#: I18's bound: a failure logged once per doubling (12 for an hour of 1 s intervals)
#: plus slack; one line per interval would be 3600.
MAX_LOG_LINES_PER_HOUR = 32


@dataclass
class ProbeResult:
    verdict: str  # "pass" | "fail" | "unknown"
    steps: list[str] = field(default_factory=list)
    message: str = ""


def _finish(store: object) -> None:
    getattr(store, "close")()  # noqa: B009 - every store has close; mypy sees object
    release = getattr(store, "release", None)
    if callable(release):
        release()


def probe_start_race(factory: StoreFactory) -> ProbeResult:
    store = factory(Policy(ttl=60.0), VirtualClock())
    steps = ["store = factory(Policy(ttl=60.0), VirtualClock())"]
    window = getattr(store, "set_race_window", None)
    meet = threading.Barrier(2)

    def pause() -> None:
        # a timeout means the other thread is held elsewhere (a lock): no race to force
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait(timeout=0.5)

    if callable(window):
        window(pause)
        steps.append("# pause between the alive-check and the start until both threads "
                     "are there (0.5 s at most)")
    go = threading.Barrier(2)

    def call() -> None:
        go.wait()
        store.start_cleanup_worker(3600.0)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alive = store.cleanup_workers_alive()
    steps += ["two threads: start_cleanup_worker(3600.0), at once",
              f"cleanup_workers_alive() == {alive}"]
    _finish(store)
    if alive > 1:
        return ProbeResult("fail", steps, f"I11: {alive} cleanup workers after two "
                                          f"concurrent start_cleanup_worker calls")
    if not callable(window):
        return ProbeResult("unknown", steps, "no set_race_window seam: the race was tried "
                                             "but not forced")
    return ProbeResult("pass", steps)


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


def probe_failing_sweeps(factory: StoreFactory) -> ProbeResult:
    store = factory(Policy(ttl=60.0), VirtualClock())
    run: Callable[..., None] | None = getattr(store, "run_worker_loop", None)
    if not callable(run):
        _finish(store)
        return ProbeResult("unknown", [], "no run_worker_loop seam (or no worker)")
    clock = VirtualClock(0.0)
    tries = 0

    def wait(seconds: float) -> bool:
        clock.advance(seconds)
        return clock() > 3600.0

    def sweep() -> object:
        nonlocal tries
        tries += 1
        raise RuntimeError("sweep failed (probe)")

    counter = _Count()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(counter)
    root.setLevel(logging.DEBUG)
    try:
        run(1.0, wait, sweep)
    finally:
        root.removeHandler(counter)
        root.setLevel(old_level)
        _finish(store)
    steps = ["run the store's worker loop for 3600 simulated seconds at interval 1.0, "
             "with a sweep that always raises",
             f"sweeps tried: {tries}; log lines: {counter.lines}"]
    if counter.lines > MAX_LOG_LINES_PER_HOUR:
        return ProbeResult("fail", steps, f"I18: {counter.lines} log lines in a simulated "
                                          f"hour of failing sweeps (bound "
                                          f"{MAX_LOG_LINES_PER_HOUR})")
    return ProbeResult("pass", steps)
