"""A run store written from `specs/` alone: a dict under one lock, retention by scanning,
and a cleanup worker of its own.

It is what a store author would write on a first day from the prose, to show that the
spec is enough to pass the conformance kit:

    runbound conform examples.simple_store:SimpleStore

Rules of this module:
- It uses only the public types of `model` (records, errors, policy, lifecycle, clock),
  never `runbound.model.spec` or `reference/`: every rule is written out here from
  `specs/lifecycle.md` and `specs/policy.md`, and named by its code.
- `_lock` guards every attribute after it and is held for the whole of each call, so a
  call is atomic and sees one instant. The worker sweeps under it too.
- Each call checks in the spec's order: L1 the store is open, its arguments left to
  right, C1 one clock reading (which raises the mark whatever happens next), the lazy
  sweep, then the operation's own rules. A refusal puts the runs back as they were
  before the lazy sweep (I10); the mark stays raised.
- Simplicity over speed: a mutation copies the dict so a refusal can put it back, and
  retention scans every run.

`examples/mutants.py` patches this source text to make single-defect stores the checker
must catch; each patch names a piece of text that occurs here exactly once, so an edit
here may need a mutant's `old` text edited too (the loader says which).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from runbound.model.clock import Clock, sleep
from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    IllegalTransition,
    InvalidArgument,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import TERMINAL, TRANSITIONS, Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.protocol import Capabilities
from runbound.model.records import MAX_RUN_ID_LENGTH, Page, Run, SweepResult

log = logging.getLogger(__name__)

#: L2, L3: the largest limit and cursor (what a signed 64-bit integer holds)
_MAX_INT = 2**63 - 1
#: L3: the longest cursor this store issues, `_MAX_INT` in decimal
_CURSOR_DIGITS = len(str(_MAX_INT))
#: W1: the longest worker interval, in seconds
_MAX_INTERVAL = 1e9
#: policy.md "The cleanup worker": a failing sweep waits at most this many intervals
_MAX_BACKOFF = 32
_NAMES = frozenset(s.value for s in Status)
_workers = itertools.count(1)


def _shown(value: object) -> str:
    """`value` for a message, short whatever it is (a huge int has no repr)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<int of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}... ({type(value).__name__})"


def _has_surrogate(text: str) -> bool:
    """R1, R3: a lone surrogate (U+D800-U+DFFF) is not text: it has no UTF-8 form."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _terminated_at(run: Run) -> float:
    assert run.terminated_at is not None  # called on terminal runs only
    return run.terminated_at


class SimpleStore:
    capabilities = Capabilities(thread_safe=True)

    def __init__(self, policy: Policy, clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        #: the worker's thread name: how `cleanup_workers_alive` finds it among all threads
        self._name = f"simple-store-cleanup-{next(_workers)}"
        # _lock guards everything below
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}  # in start order: a start (re)inserts at the end
        self._next_seq = 1
        self._mark = -math.inf  # C1: the highest clock reading any call made
        self._closed = False
        #: the last worker started, alive or ended; `_stop` is set by stop and close
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the operations of specs/lifecycle.md -------------------------------------------

    def start(self, run_id: object) -> Run:
        with self._lock:
            self._open()
            rid = self._run_id(run_id)
            with self._mutation(rid) as now:
                old = self._runs.get(rid)
                if old is not None and old.terminated_at is None:
                    raise RunAlreadyActive(rid, old.status,
                                           "A1: a run with this id is already active")
                self._runs.pop(rid, None)  # a terminal run, visible or not, is replaced
                active = sum(1 for r in self._runs.values() if r.terminated_at is None)
                if self.policy.max_active is not None and active >= self.policy.max_active:
                    raise AdmissionRefused(rid, "absent" if old is None else old.status,
                                           f"A2: {active} active runs, max_active is "
                                           f"{self.policy.max_active}")
                run = Run(rid, Status.PENDING, now, now, seq=self._next_seq)
                self._next_seq += 1
                self._runs[rid] = run
                return run

    def transition(self, run_id: object, status: object) -> Run:
        with self._lock:
            self._open()
            rid = self._run_id(run_id)
            target = self._status(rid, status)
            with self._mutation(rid) as now:
                old = self._visible(rid, now)
                if target not in TRANSITIONS[old.status]:
                    raise IllegalTransition(rid, old.status,
                                            f"T1: cannot move {old.status} -> {target}")
                done = target in TERMINAL
                new = replace(old, status=target, updated_at=now,
                              terminated_at=now if done else None)
                self._runs[rid] = new
                if done:  # the cap does not wait for a sweep (policy.md)
                    self._enforce_cap()
                return new

    def heartbeat(self, run_id: object) -> Run:
        with self._lock:
            self._open()
            rid = self._run_id(run_id)
            with self._mutation(rid) as now:
                new = replace(self._live(rid, now, "heartbeat"), updated_at=now)
                self._runs[rid] = new
                return new

    def append_event(self, run_id: object, payload: object) -> int:
        with self._lock:
            self._open()
            rid = self._run_id(run_id)
            text = self._payload(rid, payload)
            with self._mutation(rid) as now:
                old = self._live(rid, now, "append_event")
                events, dropped = (*old.events, text), old.dropped_events
                cap = self.policy.max_events_per_run
                if cap is not None and len(events) > cap:  # a ring: the oldest go
                    dropped += len(events) - cap
                    events = events[len(events) - cap:]
                self._runs[rid] = replace(old, events=events, dropped_events=dropped,
                                          updated_at=now)
                return old.dropped_events + len(old.events) + 1

    def get(self, run_id: object) -> Run:
        with self._lock:
            self._open()
            rid = self._run_id(run_id)
            now = self._now(rid)
            return self._visible(rid, now)

    def list_runs(self, limit: object, status: object = None, cursor: object = None) -> Page:
        """Visible runs, newest started first, after the cursor's position (its run's
        `seq`): a walk neither repeats a run nor skips one that stays visible."""
        with self._lock:
            self._open()
            count = self._limit(limit)
            wanted = None if status is None else self._status("*", status)
            below = self._cursor(cursor)
            now = self._now("*")
            matching = [r for r in reversed(self._runs.values())
                        if (wanted is None or r.status is wanted)
                        and (below is None or r.seq < below)
                        and not self._expired(r, now)]
            page = matching[:count]
            more = len(matching) > count
            return Page(tuple(page), str(page[-1].seq) if more else None)

    def prune(self) -> SweepResult:
        with self._lock:
            self._open()
            return self._sweep(self._now("*"))

    def __len__(self) -> int:
        """Runs retained, expired ones not yet swept included."""
        with self._lock:
            self._open()
            return len(self._runs)

    def snapshot(self) -> tuple[Run, ...]:
        with self._lock:
            self._open()
            return tuple(self._runs.values())

    # --- the cleanup worker (W2, W3) and the store's life --------------------------------

    def start_cleanup_worker(self, interval: object) -> bool:
        with self._lock:
            self._open()
            seconds = self._interval(interval)
            if self._worker is not None and self._worker.is_alive():
                return False
            self._launch(seconds)
            return True

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        """True iff a worker was running; returns once it has ended (W3). The stop event
        is set under the lock, so a sweep either finished before or never starts."""
        with self._lock:
            thread = self._worker
            running = thread is not None and thread.is_alive()
            self._stop.set()
        if thread is not None and running and thread is not threading.current_thread():
            thread.join(timeout)
        return running

    def cleanup_workers_alive(self) -> int:
        """Counted from the interpreter's threads by the name this store gives its worker,
        not remembered: a thread no handle knows of is counted too (I11)."""
        return sum(1 for t in threading.enumerate() if t.name == self._name)

    def close(self) -> None:
        """L1 from now on; the worker is stopped in the same step, so no start can slip in
        between, and joined (W3). Safe twice."""
        with self._lock:
            self._closed = True
            thread = self._worker
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _launch(self, seconds: float) -> None:
        # One stop event for every worker of the store: a worker starts only once the last
        # has ended, so clearing it revives none, and close() reaches every thread.
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, args=(seconds, self._stop),
                                        name=self._name, daemon=True)
        self._worker.start()

    def _work(self, interval: float, stop: threading.Event) -> None:
        """W2: wait `interval` on the store's own clock, then sweep as `prune()` does. A
        failing sweep (a clock that reads NaN, C1) waits twice as long each time, up to
        `_MAX_BACKOFF` intervals, and is logged at the 1st, 2nd, 4th, 8th... failure in a
        row only, so a fault that lasts logs a few lines, not one per interval."""
        failures = 0
        delay = interval
        while not sleep(self._clock, delay, stop):
            try:
                with self._lock:
                    if stop.is_set():
                        return  # W3: no sweep starts once stop or close has the lock
                    self._sweep(self._now("*"))
            except RunboundError as error:
                failures += 1
                delay = interval * min(2 ** failures, _MAX_BACKOFF)
                if failures & (failures - 1) == 0:
                    log.warning("cleanup sweep failed (%d in a row, next in %gs): %s",
                                failures, delay, error)
                continue
            failures, delay = 0, interval

    # --- the order of checks ---------------------------------------------------------------

    def _open(self) -> None:
        """L1."""
        if self._closed:
            raise StoreClosed("*", "closed", "L1: the store is closed")

    def _reading(self, run_id: str) -> float:
        """C1: one reading of the clock; NaN or an infinity is refused."""
        reading = self._clock()
        if not isinstance(reading, int | float) or not math.isfinite(reading):
            raise ClockError(run_id, "n/a", f"C1: the clock read {reading!r}; a reading "
                                            f"must be a finite number")
        return reading

    def _now(self, run_id: str) -> float:
        """C1: the call's effective time, max(mark, reading); the mark is raised by every
        call that reads the clock, reads and refused calls too."""
        reading = self._reading(run_id)
        self._mark = max(self._mark, reading)
        return self._mark

    @contextmanager
    def _mutation(self, run_id: str) -> Iterator[float]:
        """Steps 3-5 of a mutating call: the clock, the lazy sweep, then the call's own
        rules in the body. A refusal puts back the runs as they were before the sweep."""
        before = dict(self._runs)
        now = self._now(run_id)
        if self.policy.sweep is not SweepMode.BACKGROUND:
            self._sweep(now)
        try:
            yield now
        except RunboundError:
            self._runs = before  # I10; not the mark: C1 keeps it raised
            raise

    # --- the arguments (specs/lifecycle.md "What an argument may be") -------------------

    @staticmethod
    def _run_id(value: object) -> str:
        """R1: a str of 1 to 128 code points with no surrogate; anything else a str holds
        (quotes, NUL, "ERR") is an id, kept exactly."""
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_RUN_ID_LENGTH:
            raise InvalidArgument(_shown(value), "n/a", f"R1: a run id is a str of 1 to "
                                  f"{MAX_RUN_ID_LENGTH} characters, got {_shown(value)}")
        if _has_surrogate(value):
            raise InvalidArgument(_shown(value), "n/a", "R1: a run id holds no surrogate")
        return value

    @staticmethod
    def _status(run_id: str, value: object) -> Status:
        """R2: a Status, or one of the five names as a str."""
        if isinstance(value, Status):
            return value
        if isinstance(value, str) and value in _NAMES:
            return Status(value)
        raise InvalidArgument(run_id, "n/a", f"R2: a status is one of {sorted(_NAMES)}, "
                                             f"got {_shown(value)}")

    @staticmethod
    def _payload(run_id: str, payload: object) -> str:
        """R3: a str with no surrogate, of any length, the empty string included."""
        if not isinstance(payload, str):
            raise InvalidArgument(run_id, "n/a", f"R3: a payload is a str, got "
                                                 f"{_shown(payload)}")
        if _has_surrogate(payload):
            raise InvalidArgument(run_id, "n/a", "R3: a payload holds no surrogate")
        return payload

    @staticmethod
    def _limit(value: object) -> int:
        """L2: an int, not a bool, from 1 to 2**63-1."""
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_INT:
            raise InvalidArgument("*", "n/a", f"L2: a limit is an int from 1 to 2**63-1, "
                                              f"got {_shown(value)}")
        return value

    @staticmethod
    def _cursor(value: object) -> int | None:
        """L3: None, or a cursor this store issued: a run's `seq` in ASCII decimal, at
        most 2**63-1 ("²", "１", "-1", " 1" and 5,000 digits are not)."""
        if value is None:
            return None
        if (not isinstance(value, str) or not 1 <= len(value) <= _CURSOR_DIGITS
                or not (value.isascii() and value.isdigit()) or int(value) > _MAX_INT):
            raise InvalidArgument("*", "n/a", f"L3: a cursor comes from a page of this "
                                              f"store, got {_shown(value)}")
        return int(value)

    @staticmethod
    def _interval(value: object) -> float:
        """W1: an int or float, not a bool, 0 < interval <= 1e9 seconds (NaN is not)."""
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not 0 < value <= _MAX_INTERVAL):
            raise InvalidArgument("*", "n/a", f"W1: a worker interval is a number of "
                                              f"seconds in (0, 1e9], got {_shown(value)}")
        return float(value)

    # --- retention (specs/policy.md) ------------------------------------------------------

    def _expired(self, run: Run, now: float) -> bool:
        """ttl: a terminal run is expired, and invisible, once now >= terminated_at + ttl."""
        ttl = self.policy.ttl
        return run.terminated_at is not None and ttl is not None and \
            now >= run.terminated_at + ttl

    def _stale(self, run: Run, now: float) -> bool:
        """stale_after: an active run not updated since now - stale_after."""
        lease = self.policy.stale_after
        return run.terminated_at is None and lease is not None and \
            now >= run.updated_at + lease

    def _sweep(self, now: float) -> SweepResult:
        """"The sweep": reap stale runs to FAILED, drop expired ones, then the cap. Reaping
        first means a reaped run's TTL starts now."""
        reaped = [rid for rid, run in self._runs.items() if self._stale(run, now)]
        for rid in reaped:
            self._runs[rid] = replace(self._runs[rid], status=Status.FAILED, updated_at=now,
                                      terminated_at=now)
        expired = [rid for rid, run in self._runs.items() if self._expired(run, now)]
        for rid in expired:
            del self._runs[rid]
        evicted = self._enforce_cap()
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)), tuple(sorted(evicted)))

    def _enforce_cap(self) -> list[str]:
        """I1: beyond max_terminal, the runs that terminated first go, then those started
        first; an active run never (I4)."""
        cap = self.policy.max_terminal
        if cap is None:
            return []
        # sorted() is stable and the dict is in start order: runs that terminated at the
        # same time go oldest started first
        ended = sorted((r for r in self._runs.values() if r.terminated_at is not None),
                       key=_terminated_at)
        victims = [r.run_id for r in ended[:max(0, len(ended) - cap)]]
        for rid in victims:
            del self._runs[rid]
        return victims

    def _visible(self, rid: str, now: float) -> Run:
        run = self._runs.get(rid)
        if run is None:
            raise UnknownRun(rid, "absent", "V1: no run with this id is retained")
        if self._expired(run, now):
            raise UnknownRun(rid, run.status, "V2: the run is past its TTL")
        return run

    def _live(self, rid: str, now: float, op: str) -> Run:
        run = self._visible(rid, now)
        if run.terminated_at is not None:
            raise NotActive(rid, run.status, f"T2: {op} needs an active run")
        return run
