"""Deliberately broken stores: each is the reference store with one defect, so that every
checker can prove, in the test suite, that it catches that defect. Never use them.

Each overrides one seam of MemoryRunStore and names the invariants it must break.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from runbound.model import rules, spec
from runbound.model.errors import AdmissionRefused, RunAlreadyActive
from runbound.model.lifecycle import Status, as_status
from runbound.model.records import Run
from runbound.reference.memory import Changes, MemoryRunStore


class EvictsActiveStore(MemoryRunStore):
    """The cap evicts the oldest *run*, whatever its status, when terminal runs exceed it."""

    label = "evicts-active"
    breaks = ("I4",)

    def _enforce_cap(self, changes: Changes | None = None) -> tuple[str, ...]:
        cap = self.policy.max_terminal
        evicted: list[str] = []
        while cap is not None and self._terminal_count > cap:
            run = self._by_seq.peekitem(0)[1]  # oldest started, active or not
            self._change(run, None, changes)
            evicted.append(run.run_id)
        return tuple(sorted(evicted))


class CountsOnlyTerminalStore(MemoryRunStore):
    """Admission control counts terminal runs against the bound instead of active ones,
    as the first seed's cap does: active runs grow past max_active and the total bound."""

    label = "counts-terminal"
    breaks = ("I2", "I3")

    def start(self, run_id: str) -> Run:
        cap = self.policy.max_active
        if cap is not None:
            with self._lock:
                bound = cap + (self.policy.max_terminal or 0)
                # the refusal names what the defect counts: terminal runs, against the bound
                if self._terminal_count >= bound:
                    raise AdmissionRefused(run_id, "absent", rules.text(
                        "A2", active=self._terminal_count, max_active=bound))
        policy, self.policy = self.policy, replace(self.policy, max_active=None)
        try:
            return super().start(run_id)
        finally:
            self.policy = policy


class RestampsTerminatedAtStore(MemoryRunStore):
    """Lets a terminal run change terminal status (COMPLETED -> FAILED, say) and stamps
    terminated_at again each time, which also restarts its TTL."""

    label = "restamps"
    breaks = ("I7",)

    def transition(self, run_id: str, status: Status | str) -> Run:
        target = as_status(run_id, status)
        with self._lock:
            old = self._by_id.get(run_id)
            if old is not None and old.terminal and target.terminal and target is not old.status:
                now = self._now()
                new = replace(old, status=target, updated_at=now, terminated_at=now)
                self._set(old, new)
                return new
        return super().transition(run_id, status)


class TwoWorkersStore(MemoryRunStore):
    """A start_cleanup_worker while a worker runs answers False and starts another
    thread anyway (the first seed's unlocked check-then-start, with the race always
    lost). Its threads are honest: cleanup_workers_alive() counts them all, and close()
    stops them all, so the defect is the count, not a leak or a lie."""

    label = "two-workers"
    breaks = ("I11",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._extra: list[tuple[threading.Thread, threading.Event]] = []

    def start_cleanup_worker(self, interval: float) -> bool:
        started = super().start_cleanup_worker(interval)  # L1 and W1 checked here
        if not started:  # one runs already: the defect starts another anyway
            stop = threading.Event()
            thread = threading.Thread(target=self._worker.run,
                                      args=(spec.check_interval(interval), stop),
                                      name=self._worker.name, daemon=True)
            thread.start()
            self._extra.append((thread, stop))
        return started

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        for thread, stop in self._extra:
            stop.set()
            thread.join(timeout)
        self._extra.clear()
        return super().stop_cleanup_worker(timeout)

    def close(self) -> None:
        super().close()
        self.stop_cleanup_worker(10.0)


class RacyStore(MemoryRunStore):
    """`start` checks for an active run under the lock, releases it, and inserts under
    the lock again: two threads can both start one id. Sequentially it is the reference's
    `start` (same checks, same order, same errors); only the concurrent check can see it."""

    label = "racy"
    breaks = ("I19",)

    def start(self, run_id: str) -> Run:
        with self._lock:
            self._check_open()
            rid = spec.check_run_id(run_id)
            now = self._now(rid)
            old = self._by_id.get(rid)
            # an active run the lazy sweep would not reap refuses the start (A1)
            if old is not None and old.active and not (
                    self.policy.lazy and spec.stale(old, self.policy, now)):
                raise RunAlreadyActive(rid, old.status, rules.text("A1"))
        time.sleep(0.0005)  # the window between the check and the act
        with self._lock:
            self._check_open()
            now = self._now(rid)
            changes = self._lazy(now)
            old = self._by_id.get(rid)
            if old is not None:  # active too, if another start won the window
                self._set(old, None)
            cap = self.policy.max_active
            if cap is not None and self._active_count >= cap:
                if old is not None:
                    self._set(None, old)
                self._undo(changes)
                raise AdmissionRefused(rid, "absent" if old is None else old.status,
                                       rules.text("A2", active=self._active_count,
                                                  max_active=cap))
            run = Run(rid, Status.PENDING, created_at=now, updated_at=now,
                      seq=self._next_seq)
            self._next_seq += 1
            self._set(None, run)
            return run


BROKEN = (EvictsActiveStore, CountsOnlyTerminalStore, RestampsTerminatedAtStore,
          TwoWorkersStore, RacyStore)
