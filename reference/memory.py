"""MemoryRunStore: the reference store, thread-safe and in memory.

Rules of this module:
- `_lock` guards every attribute after it and is held for the whole of each call, the
  clock read included, so each call is atomic and sees one instant (`now`). Each call is
  a plain `with self._lock:`, in the spec's order of checks: open, arguments, clock,
  lazy sweep, the operation's own rules.
- All changes to runs go through `_set(before, after)`, which keeps the indexes and
  counters in step. An operation checks all of its own rules before it changes anything,
  so only the lazy sweep can have changed runs before a refusal: the sweep returns its
  changes (None when it changed nothing, the common case), and a refused call puts them
  back (`_undo`), so a refused call changes nothing (I10).
- Retention is indexed, never a scan. The terminal order (the model's `eviction_key`,
  which is the TTL's order too: oldest terminated first) and the lease order
  (`updated_at`) are binary heaps with lazy deletion: an entry holds the `Run` it was
  made for and counts only while that very object is the stored run, so a change pushes
  one entry and deletes none; a heap is rebuilt when dead entries outnumber live ones.
  Each is kept only when the policy needs it. Active and terminal runs are counted, not
  indexed. `list_runs(limit=k)` walks k entries of the `seq` index (plus expired runs
  not yet swept, which background mode may leave behind).
- Returned runs are frozen `Run` values shared with the store: nothing a caller does to
  them reaches stored state.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar, cast

from sortedcontainers import SortedDict, SortedList

from runbound.model import rules, spec
from runbound.model.clock import Clock
from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status, as_status, check_transition
from runbound.model.policy import Policy, SweepMode
from runbound.model.records import Page, Run, SweepResult
from runbound.reference.worker import CleanupWorker, WorkerMixin

#: a heap entry: (key, seq, tie-breaker, the run it was made for); the tie-breaker keeps
#: two entries of one key from comparing runs
Entry = tuple[float, int, int, Run]
#: what a sweep changed, in order: (before, after) pairs for `_set`
Changes = list[tuple[Run | None, Run | None]]
#: dead heap entries tolerated beyond the live ones before a heap is rebuilt
_SLACK = 64
W = TypeVar("W")


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
        self._active_count = 0
        self._terminal_count = 0
        self._tick = itertools.count()
        # (terminated_at, seq): the TTL's order and the cap's; kept only if either is set
        self._terminal: list[Entry] | None = (
            [] if policy.ttl is not None or policy.max_terminal is not None else None)
        # (updated_at, seq): stale runs are its prefix; kept only with a lease
        self._lease: list[Entry] | None = [] if policy.stale_after is not None else None

    # --- the operations ------------------------------------------------------------------

    def start(self, run_id: str) -> Run:
        with self._lock:
            self._check_open()
            rid = spec.check_run_id(run_id)
            now = self._now(rid)
            changes = self._lazy(now)
            old = self._by_id.get(rid)
            try:
                if old is not None and old.active:
                    raise RunAlreadyActive(rid, old.status,
                                           rules.text("A1"))
                self._admit(rid, old)
            except RunboundError:
                self._undo(changes)
                raise
            if old is not None:
                self._set(old, None)
            run = Run(rid, Status.PENDING, now, now, None, (), 0, self._next_seq)
            self._next_seq += 1
            self._set(None, run)
            return run

    def transition(self, run_id: str, status: Status | str) -> Run:
        with self._lock:
            self._check_open()
            rid = spec.check_run_id(run_id)
            target = as_status(run_id, status)
            now = self._now(rid)
            changes = self._lazy(now)
            try:
                old = self._visible(rid, now)
                check_transition(rid, old.status, target)
            except RunboundError:
                self._undo(changes)
                raise
            new = Run(rid, target, old.created_at, now, now if target.terminal else None,
                      old.events, old.dropped_events, old.seq)
            self._set(old, new)
            if target.terminal:
                self._enforce_cap()
            return new

    def heartbeat(self, run_id: str) -> Run:
        with self._lock:
            self._check_open()
            rid = spec.check_run_id(run_id)
            now = self._now(rid)
            changes = self._lazy(now)
            try:
                old = self._active_run(rid, now, "heartbeat")
            except RunboundError:
                self._undo(changes)
                raise
            new = Run(rid, old.status, old.created_at, now, None, old.events,
                      old.dropped_events, old.seq)
            self._set(old, new)
            return new

    def append_event(self, run_id: str, payload: str) -> int:
        with self._lock:
            self._check_open()
            rid = spec.check_run_id(run_id)
            text = spec.check_payload(run_id, payload)
            now = self._now(rid)
            changes = self._lazy(now)
            try:
                old = self._active_run(rid, now, "append_event")
            except RunboundError:
                self._undo(changes)
                raise
            buffered = spec.buffer_event(old, text, self.policy)
            self._set(old, Run(rid, old.status, old.created_at, now, None, buffered.events,
                               buffered.dropped_events, old.seq))
            return old.dropped_events + len(old.events) + 1

    def get(self, run_id: str) -> Run:
        with self._lock:
            self._check_open()
            rid = spec.check_run_id(run_id)
            return self._visible(rid, self._now(rid))

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        with self._lock:
            self._check_open()
            spec.check_limit(limit)
            wanted = None if status is None else as_status("*", status)
            below = spec.parse_cursor(cursor)
            now = self._now()
            top = None if below is None else below - 1
            seqs = self._by_seq if wanted is None else self._seqs_by_status[wanted]
            return spec.first_page((self._by_seq[seq] for seq in
                                    seqs.irange(maximum=top, reverse=True)),
                                   limit, self.policy, now)

    def prune(self) -> SweepResult:
        with self._lock:
            self._check_open()
            return self._sweep(self._now(), None)

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

    def wrap_lock(self, wrap: Callable[[threading.Lock], W]) -> W:
        """The bench's, never a call's: put `wrap(lock)` in the place of the store's lock
        (to time how long each call holds it), before any other thread uses the store;
        the wrapper is returned."""
        wrapper = wrap(self._lock)
        self._lock = cast(threading.Lock, wrapper)  # every call only holds it with `with`
        return wrapper

    # --- one instant per call ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("*", "closed", rules.text("L1"))

    def _now(self, who: str = "*") -> float:
        """C1: one reading; NaN or an infinity is refused; the mark only goes up."""
        now = self._clock()
        if not math.isfinite(now):
            raise ClockError(who, "n/a", rules.text("C1", reading=repr(now)))
        if now > self._high:
            self._high = now
        return self._high

    def _lazy(self, now: float) -> Changes | None:
        """Step 4: the lazy sweep, if the policy is lazy; what it changed, for `_undo`."""
        policy = self.policy
        if policy.sweep is SweepMode.BACKGROUND:
            return None
        # Nothing due, read off the heaps' fronts in O(1), with the model's own tests
        # (`stale`, `expired`) written out: the smallest key is the first due, and a dead
        # front entry can only send us to the full sweep, never hide a due run.
        lease, terminal = self._lease, self._terminal
        if ((not lease or now < lease[0][0] + cast(float, policy.stale_after))
                and (not terminal or policy.ttl is None or now < terminal[0][0] + policy.ttl)
                and (policy.max_terminal is None
                     or self._terminal_count <= policy.max_terminal)):
            return None
        changes: Changes = []
        self._sweep(now, changes)
        return changes or None

    def _undo(self, changes: Changes | None) -> None:
        """A refused call: put back what its lazy sweep changed (the raised mark stays,
        as the spec says)."""
        for before, after in reversed(changes or ()):
            self._set(after, before)

    def _admit(self, rid: str, old: Run | None) -> None:
        """A2: admission control (`old`, the run `start` replaces, is terminal)."""
        cap = self.policy.max_active
        if cap is not None and self._active_count >= cap:
            raise AdmissionRefused(rid, "absent" if old is None else old.status,
                                   rules.text("A2", active=self._active_count,
                                              max_active=cap))

    # --- retention: the model's three tests, over the heaps ----------------------------

    def _sweep(self, now: float, changes: Changes | None) -> SweepResult:
        policy = self.policy
        reaped: list[str] = []
        lease = self._lease
        while lease:
            run = lease[0][3]
            if self._by_id.get(run.run_id) is not run:
                heapq.heappop(lease)  # dead: the run changed or went since
                continue
            if not spec.stale(run, policy, now):
                break  # ordered by updated_at: the rest are fresher
            heapq.heappop(lease)
            failed = Run(run.run_id, Status.FAILED, run.created_at, now, now, run.events,
                         run.dropped_events, run.seq)
            self._change(run, failed, changes)
            reaped.append(run.run_id)
        expired: list[str] = []
        terminal = self._terminal
        while terminal and policy.ttl is not None:
            run = terminal[0][3]
            if self._by_id.get(run.run_id) is not run:
                heapq.heappop(terminal)
                continue
            if not spec.expired(run, policy, now):
                break  # ordered by terminated_at: the rest expire later
            heapq.heappop(terminal)
            self._change(run, None, changes)
            expired.append(run.run_id)
        evicted = self._enforce_cap(changes)
        if not (reaped or expired or evicted):
            return _NOTHING
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)), evicted)

    def _enforce_cap(self, changes: Changes | None = None) -> tuple[str, ...]:
        cap = self.policy.max_terminal
        if cap is None or self._terminal_count <= cap:
            return ()
        terminal = cast(list[Entry], self._terminal)
        evicted: list[str] = []
        while self._terminal_count > cap:
            run = heapq.heappop(terminal)[3]
            if self._by_id.get(run.run_id) is run:
                self._change(run, None, changes)
                evicted.append(run.run_id)
        return tuple(sorted(evicted))

    def _change(self, before: Run | None, after: Run | None, changes: Changes | None
                ) -> None:
        self._set(before, after)
        if changes is not None:
            changes.append((before, after))

    # --- lookups ---------------------------------------------------------------------------

    def _visible(self, run_id: str, now: float) -> Run:
        run = self._by_id.get(run_id)
        if run is None:
            raise UnknownRun(run_id, "absent", rules.text("V1"))
        if spec.expired(run, self.policy, now):
            raise UnknownRun(run_id, run.status, rules.text("V2"))
        return run

    def _active_run(self, run_id: str, now: float, op: str) -> Run:
        run = self._visible(run_id, now)
        if not run.active:
            raise NotActive(run_id, run.status, rules.text("T2", op=op))
        return run

    # --- the only way runs change ----------------------------------------------------------

    def _set(self, before: Run | None, after: Run | None) -> None:
        """Replace `before` with `after` (one run id and seq), add `after` (no `before`),
        or remove `before` (no `after`)."""
        if before is not None:
            if after is None or after.status is not before.status:
                self._seqs_by_status[before.status].remove(before.seq)
                if before.status.active:
                    self._active_count -= 1
                else:
                    self._terminal_count -= 1
            if after is None:
                del self._by_id[before.run_id]
                del self._by_seq[before.seq]
                return  # its heap entries are dead now: `_by_id` no longer holds it
        assert after is not None
        self._by_id[after.run_id] = after
        self._by_seq[after.seq] = after  # in place when `before` had this seq
        if before is None or after.status is not before.status:
            self._seqs_by_status[after.status].add(after.seq)
            if after.status.active:
                self._active_count += 1
            else:
                self._terminal_count += 1
        if after.terminated_at is not None:
            if self._terminal is not None:
                self._push(self._terminal, after.terminated_at, after, self._terminal_count)
        elif self._lease is not None:
            self._push(self._lease, after.updated_at, after, self._active_count)

    def _push(self, heap: list[Entry], key: float, run: Run, live: int) -> None:
        heapq.heappush(heap, (key, run.seq, next(self._tick), run))
        if len(heap) > 2 * live + _SLACK:  # mostly dead entries: rebuild from the live
            heap[:] = [e for e in heap if self._by_id.get(e[3].run_id) is e[3]]
            heapq.heapify(heap)


_NOTHING = SweepResult()
