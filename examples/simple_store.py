"""A run store written from `specs/` alone: a dict under a lock, no indexes, no worker.

It is what a store author would write on a first day, to show that the prose spec is
enough to pass the conformance kit:

    runbound conform examples.simple_store:SimpleStore

Simplicity over speed: every mutation copies the dict so a refused call can put it back
(specs/invariants.md I10), and retention scans every run. It declares no cleanup worker,
so the kit leaves out the worker invariants and says so.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from model import (
    MAX_RUN_ID_LENGTH,
    TRANSITIONS,
    AdmissionRefused,
    IllegalTransition,
    InvalidArgument,
    NotActive,
    Page,
    Policy,
    Run,
    RunAlreadyActive,
    Status,
    StoreClosed,
    SweepResult,
    UnknownRun,
)
from model.conformance import Capabilities


class SimpleStore:
    capabilities = Capabilities(worker=False, thread_safe=True)

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.lock = threading.Lock()
        self.runs: dict[str, Run] = {}  # in start order (dicts keep insertion order)
        self.next_seq = 1
        self.latest = -math.inf
        self.closed = False

    # -- helpers the spec describes ------------------------------------------------

    def _now(self) -> float:
        self.latest = max(self.latest, self.clock())  # time never goes back
        return self.latest

    def _expired(self, run: Run, now: float) -> bool:  # policy.md: ttl
        ttl = self.policy.ttl
        return run.terminated_at is not None and ttl is not None and \
            now >= run.terminated_at + ttl

    def _stale(self, run: Run, now: float) -> bool:  # policy.md: stale_after
        lease = self.policy.stale_after
        return run.status in (Status.PENDING, Status.RUNNING) and lease is not None and \
            now >= run.updated_at + lease

    def _sweep(self, now: float) -> SweepResult:  # policy.md: "The sweep"
        reaped = [r.run_id for r in self.runs.values() if self._stale(r, now)]
        for rid in reaped:
            self.runs[rid] = replace(self.runs[rid], status=Status.FAILED, updated_at=now,
                                     terminated_at=now)
        expired = [r.run_id for r in self.runs.values() if self._expired(r, now)]
        for rid in expired:
            del self.runs[rid]
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)), self._cap())

    def _cap(self) -> tuple[str, ...]:
        cap = self.policy.max_terminal
        ended = sorted((r for r in self.runs.values() if r.terminated_at is not None),
                       key=lambda r: (r.terminated_at, r.seq))
        victims = [] if cap is None else ended[:max(0, len(ended) - cap)]
        for r in victims:
            del self.runs[r.run_id]
        return tuple(sorted(r.run_id for r in victims))

    @contextmanager
    def _call(self, mutation: bool = True) -> Iterator[float]:
        with self.lock:
            if self.closed:
                raise StoreClosed("*", "closed", "L1: the store is closed")
            saved, now = dict(self.runs), self._now()
            try:
                if mutation and self.policy.sweep.value != "background":
                    self._sweep(now)
                yield now
            except Exception:
                self.runs = saved  # I10: a refused call changes nothing
                raise

    @staticmethod
    def _id(run_id: object) -> str:
        if not isinstance(run_id, str) or not 1 <= len(run_id) <= MAX_RUN_ID_LENGTH:
            raise InvalidArgument(run_id, "n/a", "R1: bad run id")
        return run_id

    @staticmethod
    def _status(value: object) -> Status:
        if isinstance(value, str) and value in {s.value for s in Status}:
            return Status(value)
        raise InvalidArgument("*", "n/a", f"bad status {value!r}")

    def _visible(self, run_id: str, now: float) -> Run:
        run = self.runs.get(run_id)
        if run is None or self._expired(run, now):
            raise UnknownRun(run_id, "absent" if run is None else run.status, "V1/V2")
        return run

    def _live(self, run_id: str, now: float) -> Run:
        run = self._visible(run_id, now)
        if run.terminated_at is not None:
            raise NotActive(run_id, run.status, "T2: the run is terminal")
        return run

    # -- the operations of specs/lifecycle.md -------------------------------------

    def start(self, run_id: str) -> Run:
        rid = self._id(run_id)
        with self._call() as now:
            old = self.runs.pop(rid, None)
            if old is not None and old.terminated_at is None:
                raise RunAlreadyActive(rid, old.status, "S1")
            active = sum(r.terminated_at is None for r in self.runs.values())
            if self.policy.max_active is not None and active >= self.policy.max_active:
                raise AdmissionRefused(rid, "absent", "S2")
            run = Run(rid, Status.PENDING, now, now, seq=self.next_seq)
            self.next_seq += 1
            self.runs[rid] = run
            return run

    def transition(self, run_id: str, status: Status | str) -> Run:
        rid, target = self._id(run_id), self._status(status)
        with self._call() as now:
            old = self._visible(rid, now)
            if target not in TRANSITIONS[old.status]:
                raise IllegalTransition(rid, old.status, f"T1: not to {target}")
            done = target in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
            new = replace(old, status=target, updated_at=now,
                          terminated_at=now if done else None)
            self.runs[rid] = new
            self._cap()
            return new

    def heartbeat(self, run_id: str) -> Run:
        rid = self._id(run_id)
        with self._call() as now:
            new = replace(self._live(rid, now), updated_at=now)
            self.runs[rid] = new
            return new

    def append_event(self, run_id: str, payload: str) -> int:
        rid = self._id(run_id)
        if not isinstance(payload, str):
            raise InvalidArgument(rid, "n/a", "E1: payload must be str")
        with self._call() as now:
            old = self._live(rid, now)
            events, dropped = (*old.events, payload), old.dropped_events
            cap = self.policy.max_events_per_run
            if cap is not None and len(events) > cap:
                dropped += len(events) - cap
                events = events[len(events) - cap:]
            self.runs[rid] = replace(old, events=events, dropped_events=dropped,
                                     updated_at=now)
            return old.dropped_events + len(old.events) + 1

    def get(self, run_id: str) -> Run:
        rid = self._id(run_id)
        with self._call(mutation=False) as now:
            return self._visible(rid, now)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument("*", "n/a", "L2: bad limit")
        wanted = None if status is None else self._status(status)
        if cursor is not None and (not isinstance(cursor, str) or not cursor.isdigit()):
            raise InvalidArgument("*", "n/a", "L3: bad cursor")
        below = math.inf if cursor is None else int(cursor)
        with self._call(mutation=False) as now:
            runs = [r for r in reversed(self.runs.values()) if r.seq < below
                    and (wanted is None or r.status is wanted) and not self._expired(r, now)]
            page = runs[:limit]
            return Page(tuple(page), str(page[-1].seq) if len(runs) > limit else None)

    def prune(self) -> SweepResult:
        with self._call(mutation=False) as now:
            return self._sweep(now)

    def __len__(self) -> int:
        return len(self.runs)

    def snapshot(self) -> tuple[Run, ...]:
        with self.lock:
            return tuple(self.runs.values())

    # no worker (declared): these are the interface's, answering "none"
    def start_cleanup_worker(self, interval: float) -> bool:
        return False

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return False

    def cleanup_workers_alive(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def to_json(self) -> str:  # not in the spec: handy for debugging
        return json.dumps([r.run_id for r in self.runs.values()])
