"""MemoryRunStore: the reference store, thread-safe and in memory.

Rules of this module:
- `_lock` guards every attribute after it and is held for the whole of each call, the
  clock read included, so each call is atomic and sees one instant (`now`).
- All changes to runs go through `_add` and `_remove`, which keep the indexes in step
  and journal what they did. A call refused after a lazy sweep began rolls the journal
  back, so a refused call changes nothing (I10).
- Retention is indexed, never a scan: the terminal index is ordered by the model's
  `eviction_key`, so TTL expiry and cap eviction pop from its front; the active index is
  ordered by `updated_at`, so stale runs are its prefix. Each eviction is O(log n);
  `list_runs(limit=k)` walks k entries of the `seq` index (plus expired runs not yet
  swept, which background mode may leave behind).
- Returned runs are frozen `Run` values shared with the store: nothing a caller does to
  them reaches stored state.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, cast

from sortedcontainers import SortedDict, SortedList

from model import spec
from model.clock import Clock
from model.errors import (
    AdmissionRefused,
    ClockError,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from model.lifecycle import Status, as_status, check_transition
from model.policy import Policy
from model.records import Page, Run, SweepResult
from reference.worker import CleanupWorker, WorkerMixin

#: a call's argument checks, run after the open check (the spec's order of checks)
Arguments = Callable[[], tuple[Any, ...]]


def _no_arguments() -> tuple[Any, ...]:
    return ()


class MemoryRunStore(WorkerMixin):
    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._worker = CleanupWorker(self.prune, self._clock)
        self._lock = threading.Lock()
        self._high = -math.inf            # latest `now` seen: time never goes back
        self._next_seq = 1
        self._closed = False
        self._by_id: dict[str, Run] = {}
        self._by_seq: SortedDict = SortedDict()          # seq -> Run, for listing
        self._seqs_by_status: dict[Status, SortedList] = {s: SortedList() for s in Status}
        self._terminal: SortedList = SortedList()        # (eviction_key, run_id)
        self._active: SortedList = SortedList()          # (updated_at, seq, run_id)
        self._journal: list[tuple[bool, Run]] | None = None  # (added?, run) while in a call

    # --- the operations ------------------------------------------------------------------

    def start(self, run_id: str) -> Run:
        with self._mutation(lambda: (spec.check_run_id(run_id),)) as (now, (rid,)):
            old = self._by_id.get(rid)
            if old is not None and old.active:
                raise RunAlreadyActive(rid, old.status, "S1: a run with this id is already active")
            if old is not None:
                self._remove(old)
            cap = self.policy.max_active
            if cap is not None and len(self._active) >= cap:
                raise AdmissionRefused(rid, "absent" if old is None else old.status,
                                       f"S2: {len(self._active)} active runs, "
                                       f"max_active is {cap}")
            run = Run(rid, Status.PENDING, created_at=now, updated_at=now, seq=self._next_seq)
            self._next_seq += 1
            self._add(run)
            return run

    def transition(self, run_id: str, status: Status | str) -> Run:
        with self._mutation(lambda: (spec.check_run_id(run_id), as_status(run_id, status))
                            ) as (now, (rid, target)):
            old = self._visible(rid, now)
            check_transition(rid, old.status, target)
            new = replace(old, status=target, updated_at=now,
                          terminated_at=now if target.terminal else None)
            self._remove(old)
            self._add(new)
            if target.terminal:
                self._enforce_cap()
            return new

    def heartbeat(self, run_id: str) -> Run:
        with self._mutation(lambda: (spec.check_run_id(run_id),)) as (now, (rid,)):
            old = self._active_run(rid, now, "heartbeat")
            new = replace(old, updated_at=now)
            self._remove(old)
            self._add(new)
            return new

    def append_event(self, run_id: str, payload: str) -> int:
        with self._mutation(lambda: (spec.check_run_id(run_id),
                                     spec.check_payload(run_id, payload))
                            ) as (now, (rid, text)):
            old = self._active_run(rid, now, "append_event")
            self._remove(old)
            self._add(replace(spec.buffer_event(old, text, self.policy), updated_at=now))
            return old.dropped_events + len(old.events) + 1

    def get(self, run_id: str) -> Run:
        with self._reading(lambda: (spec.check_run_id(run_id),)) as (now, (rid,)):
            return self._visible(rid, now)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        def checked() -> tuple[object, ...]:
            return (spec.check_limit(limit), None if status is None else as_status("*", status),
                    spec.parse_cursor(cursor))

        with self._reading(checked) as (now, (_, wanted, below)):
            top = None if below is None else cast(int, below) - 1
            seqs = self._by_seq if wanted is None else self._seqs_by_status[cast(Status, wanted)]
            return spec.first_page((self._by_seq[seq] for seq in
                                    seqs.irange(maximum=top, reverse=True)),
                                   limit, self.policy, now)

    def prune(self) -> SweepResult:
        with self._mutation(_no_arguments, sweep=False) as (now, _):
            return self._sweep(now)

    def __len__(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._by_id)

    def snapshot(self) -> tuple[Run, ...]:
        with self._lock:
            self._check_open()
            return tuple(self._by_seq.values())

    # --- the worker and the store's life -----------------------------------------------

    def start_cleanup_worker(self, interval: float) -> bool:
        with self._lock:
            self._check_open()
            interval = spec.check_interval(interval)
            # the worker's own lock makes check-and-start atomic; taking ours too orders it
            # against close(), so no worker can start on a closed store
            return self._worker.start(interval)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._worker.stop(timeout=10.0)

    def __enter__(self) -> MemoryRunStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- one instant per call ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("*", "closed", "L1: the store is closed")

    def _now(self, checked: tuple[Any, ...] = ()) -> float:
        """C1: one reading; NaN or an infinity is refused; the mark only goes up."""
        now = self._clock()
        if not math.isfinite(now):
            who = checked[0] if checked and isinstance(checked[0], str) else "*"
            raise ClockError(who, "n/a", f"C1: the clock read {now!r}; a reading must be "
                                         "a finite number")
        if now > self._high:
            self._high = now
        return self._high

    @contextmanager
    def _reading(self, arguments: Arguments) -> Iterator[tuple[float, tuple[Any, ...]]]:
        """Lock, then the spec's order of checks: open, arguments, the clock."""
        with self._lock:
            self._check_open()
            checked = arguments()
            yield self._now(checked), checked

    @contextmanager
    def _mutation(self, arguments: Arguments, *, sweep: bool = True
                  ) -> Iterator[tuple[float, tuple[Any, ...]]]:
        """`_reading`, then the lazy sweep if the policy is lazy; undo every change to the
        runs if the call is refused (the raised mark stays, as the spec says)."""
        with self._lock:
            self._check_open()
            checked = arguments()
            now = self._now(checked)
            self._journal = []
            try:
                if sweep and self.policy.lazy:
                    self._sweep(now)
                yield now, checked
            except RunboundError:
                for added, run in reversed(self._journal):
                    (self._unindex if added else self._index)(run)
                raise
            finally:
                self._journal = None

    # --- retention: the model's three tests, over indexes ------------------------------

    def _sweep(self, now: float) -> SweepResult:
        reaped: list[str] = []
        while self.policy.stale_after is not None and self._active:
            run = self._by_id[self._active[0][2]]
            if not spec.stale(run, self.policy, now):
                break  # ordered by updated_at: the rest are fresher
            self._remove(run)
            self._add(replace(run, status=Status.FAILED, updated_at=now, terminated_at=now))
            reaped.append(run.run_id)
        expired: list[str] = []
        while self._terminal:
            run = self._by_id[self._terminal[0][1]]
            if not spec.expired(run, self.policy, now):
                break  # ordered by terminated_at: the rest expire later
            self._remove(run)
            expired.append(run.run_id)
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)),
                           self._enforce_cap())

    def _enforce_cap(self) -> tuple[str, ...]:
        cap = self.policy.max_terminal
        evicted: list[str] = []
        while cap is not None and len(self._terminal) > cap:
            run = self._by_id[self._terminal[0][1]]
            self._remove(run)
            evicted.append(run.run_id)
        return tuple(sorted(evicted))

    # --- lookups ---------------------------------------------------------------------------

    def _visible(self, run_id: str, now: float) -> Run:
        run = self._by_id.get(run_id)
        if run is None:
            raise UnknownRun(run_id, "absent", "V1: no run with this id is retained")
        if spec.expired(run, self.policy, now):
            raise UnknownRun(run_id, run.status, "V2: the run is past its TTL")
        return run

    def _active_run(self, run_id: str, now: float, op: str) -> Run:
        run = self._visible(run_id, now)
        if not run.active:
            raise NotActive(run_id, run.status, f"T2: {op} needs an active run")
        return run

    # --- the only two ways runs change ---------------------------------------------------

    def _add(self, run: Run) -> None:
        self._index(run)
        if self._journal is not None:
            self._journal.append((True, run))

    def _remove(self, run: Run) -> None:
        self._unindex(run)
        if self._journal is not None:
            self._journal.append((False, run))

    def _index(self, run: Run) -> None:
        self._by_id[run.run_id] = run
        self._by_seq[run.seq] = run
        self._seqs_by_status[run.status].add(run.seq)
        if run.terminal:
            self._terminal.add((spec.eviction_key(run), run.run_id))
        else:
            self._active.add((run.updated_at, run.seq, run.run_id))

    def _unindex(self, run: Run) -> None:
        del self._by_id[run.run_id]
        del self._by_seq[run.seq]
        self._seqs_by_status[run.status].remove(run.seq)
        if run.terminal:
            self._terminal.remove((spec.eviction_key(run), run.run_id))
        else:
            self._active.remove((run.updated_at, run.seq, run.run_id))
