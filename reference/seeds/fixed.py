"""The smallest changes that make each seed replica keep its promises.

Each fixed store subclasses its replica and overrides only what was wrong, so reading a
class is reading the fix. They keep their seed's API (and so still differ from runbound's
in vocabulary: I13, I14) and live in memory (I17: durability is the SQLite store's job).

S1 (`FixedRunStore`):
1. the cap is hard: `max_active` refuses a new run (`StoreFullError`) instead of letting
   in-progress runs push the store past `max_runs`; `max_terminal` caps finished runs;
2. stuck runs expire: a lease (`stale_after`) fails a run not updated for that long;
3. finished runs are final and stamped once: `terminated_at`, not `updated_at`, keys the
   TTL, an update of a finished run is refused, and `cancelled` is a finished status;
4. expired runs are hidden at read, before a prune removes them;
5. artifacts are a ring buffer;
6. the worker is started under a lock, can be stopped, backs off, and logs a failure at
   the 1st, 2nd, 4th... in a row (it is `runbound.reference.worker.CleanupWorker`);
7. a refused call undoes the prune it began with (runbound's rule I10);
8. a TTL of 0 means "expire at once", not "off" (None is off);
9. time never goes back: the store keeps the highest clock reading it has seen and uses
   it when the clock reads less (runbound's rule C1).

S2 (`FixedChatRunRegistry`):
1. a terminal run is final: frames and status calls for it, or for an unknown id, are
   refused (no upsert), so nothing revives a run whose `terminated_at` is set;
2. expired runs are hidden at read;
3. `max_active` refuses a start (`RegistryFull`);
4. a lease (`stale_after`) fails a run that stopped sending frames;
5. a refused start undoes the sweep it began with (runbound's rule I10);
6. time never goes back: the registry keeps the highest clock reading it has seen and
   uses it when the clock reads less (runbound's rule C1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from runbound.reference.seeds import s1, s2
from runbound.reference.worker import CleanupWorker

# --- S1 -----------------------------------------------------------------------------

S1_FINISHED = ("completed", "failed", "cancelled")  # 3: "cancelled" is finished too
S1_MOVES = {"pending": {"processing", "failed", "cancelled"},  # 3: status changes checked
            "processing": {"completed", "failed", "cancelled"}}


class StoreFullError(RuntimeError):
    def __init__(self, active: int, max_active: int) -> None:
        super().__init__(f"{active} runs in progress, max_active is {max_active}")
        self.active = active  # what the adapter's refusal (A2) names


class RunFinishedError(RuntimeError):
    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status  # the run's when refused: what the adapter's refusal names


@dataclass
class FixedRunRecord(s1.RunRecord):
    terminated_at: float | None = None  # 3: stamped once


def _fixed(record: s1.RunRecord) -> FixedRunRecord:
    """A record as the fixed store keeps it (one put from outside may be a plain one)."""
    if isinstance(record, FixedRunRecord):
        return record
    return FixedRunRecord(**vars(record))


class FixedRunStore(s1.RunStore):
    def __init__(self, *args: Any, max_active: int | None = None,
                 max_terminal: int | None = None, stale_after: float | None = None,
                 max_artifacts: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("ttl_seconds") == 0:
            self._ttl_seconds = 0  # 8: a TTL of 0 means "at once", not "off"
        self._max_active = max_active
        self._max_terminal = max_terminal
        self._stale_after = stale_after
        self._max_artifacts = max_artifacts
        self._worker = CleanupWorker(self.prune_expired, self._clock)  # 6
        self._high = -math.inf  # 9

    def _now(self) -> float:
        """9: one reading, never below the highest seen (the replica's `_now` refuses a
        reading that is not a time)."""
        self._high = max(self._high, super()._now())
        return self._high

    def new_record(self, run_id: str, status: str = "processing") -> s1.RunRecord:
        now = self._now()
        return FixedRunRecord(run_id=run_id, status=status, created_at=now, updated_at=now)

    @contextmanager
    def _atomic(self) -> Iterator[float]:
        """7: the lock, one `now`, and a refused call undoes the prune it began with."""
        with self._lock:
            saved = dict(self._runs)
            try:
                yield self._now()
            except Exception:
                self._runs = saved
                raise

    def put_run(self, record: s1.RunRecord) -> None:
        with self._atomic() as now:
            self._prune_locked(now)
            old = self._runs.get(record.run_id)
            active = sum(1 for r in self._runs.values() if r.status not in S1_FINISHED)
            replacing_active = old is not None and old.status not in S1_FINISHED
            if self._max_active is not None and active - replacing_active >= self._max_active:
                raise StoreFullError(active, self._max_active)  # 1
            self._runs[record.run_id] = record
            self._prune_locked(now)

    def update_run(self, run_id: str, **updates: Any) -> s1.RunRecord:
        with self._atomic() as now:
            self._prune_locked(now)
            record = self._visible(run_id, now)
            if record.status in S1_FINISHED:
                raise RunFinishedError(f"Run ID {run_id} is {record.status}",  # 3
                                       record.status)
            status = updates.get("status", record.status)
            if status != record.status and status not in S1_MOVES.get(record.status, ()):
                raise RunFinishedError(f"Run ID {run_id}: {record.status} -> {status}",
                                       record.status)
            updates.pop("run_id", None)
            if self._max_artifacts is not None and "artifacts" in updates:  # 5
                updates["artifacts"] = updates["artifacts"][-self._max_artifacts:] \
                    if self._max_artifacts else []
            finished = updates.get("status") in S1_FINISHED
            updated = replace(_fixed(record), **updates, updated_at=now,
                              terminated_at=now if finished else None)
            self._runs[run_id] = updated
            self._prune_locked(now)
            return updated

    def get_run(self, run_id: str) -> s1.RunRecord:
        with self._lock:
            return self._visible(run_id, self._now())  # 4

    def list_runs(self, limit: int = 10) -> list[s1.RunRecord]:
        with self._lock:
            now = self._now()
            runs = sorted((r for r in self._runs.values() if not self._expired(r, now)),
                          key=lambda r: r.updated_at, reverse=True)  # 4
            return runs[:limit]

    def _visible(self, run_id: str, now: float) -> s1.RunRecord:
        record = self._runs.get(run_id)
        if record is None or self._expired(record, now):
            raise s1.UnknownRunError(f"Run ID {run_id} not found")
        return record

    def _expired(self, record: s1.RunRecord, now: float) -> bool:
        t = getattr(record, "terminated_at", None)
        return t is not None and self._ttl_seconds is not None and \
            not now < t + self._ttl_seconds

    def _prune_locked(self, now: float) -> int:
        removed = 0
        if self._stale_after is not None:  # 2: the lease
            for run_id, r in list(self._runs.items()):
                if r.status not in S1_FINISHED and not now < r.updated_at + self._stale_after:
                    self._runs[run_id] = replace(_fixed(r), status="failed", updated_at=now,
                                                 terminated_at=now,
                                                 error_message="lease expired")
        for run_id, r in list(self._runs.items()):  # TTL on terminated_at (3)
            if self._expired(r, now):
                del self._runs[run_id]
                removed += 1
        finished = sorted((r for r in self._runs.values() if r.status in S1_FINISHED),
                          key=lambda r: getattr(r, "terminated_at", 0) or 0)
        cap = self._max_terminal
        while cap is not None and len(finished) > cap:  # 1: a cap on finished runs
            del self._runs[finished.pop(0).run_id]
            removed += 1
        return removed

    def start_cleanup_worker(self) -> bool:  # type: ignore[override]
        """6: under a lock; and it says whether it started one."""
        interval = self._cleanup_interval
        return interval is not None and self._worker.start(interval)

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self._worker.stop(timeout)  # 6: it can be stopped


# --- S2 -----------------------------------------------------------------------------

class RegistryFull(RuntimeError):
    def __init__(self, active: int) -> None:
        super().__init__(f"{active} runs active")
        self.active = active  # what the adapter's refusal (A2) names


class FixedChatRunRegistry(s2.ChatRunRegistry):
    def __init__(self, *, max_active: int | None = None, stale_after_ms: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_active = max_active
        self.stale_after_ms = stale_after_ms
        self._high_ms = 0  # 6

    def _now_ms(self) -> int:
        """6: one reading, never below the highest seen."""
        self._high_ms = max(self._high_ms, super()._now_ms())
        return self._high_ms

    def try_start(self, conversation_id: str) -> bool:
        with self._lock:
            now = self._now_ms()
            saved = {cid: replace(st) for cid, st in self._inner.items()}
            self._prune_terminal_locked(now)
            existing = self._inner.get(conversation_id)
            active = sum(1 for s in self._inner.values() if s.info.status in s2.ACTIVE)
            if existing is not None and existing.info.status in s2.ACTIVE:
                self._inner = saved  # 5: a refused start changes nothing
                return False
            if self.max_active is not None and active >= self.max_active:
                self._inner = saved
                raise RegistryFull(active)  # 3
            self._inner[conversation_id] = s2._RunState(
                s2.ChatRunInfo(conversation_id, "running", started_at=now, updated_at=now))
            return True

    def _upsert(self, conversation_id: str, now: int) -> s2._RunState:
        state = self._inner.get(conversation_id)
        if state is None or self._expired(state, now):
            raise KeyError(conversation_id)  # 1: no upsert
        if state.info.status in s2.TERMINAL:
            raise ValueError(f"{conversation_id} is {state.info.status}")  # 1: final
        return state

    def get(self, conversation_id: str) -> s2.ChatRunInfo | None:
        with self._lock:
            state = self._inner.get(conversation_id)
            if state is None or self._expired(state, self._now_ms()):
                return None  # 2
            return state.info

    def list(self, active_only: bool = False) -> list[s2.ChatRunInfo]:
        with self._lock:
            now = self._now_ms()
            infos = [s.info for s in self._inner.values() if not self._expired(s, now)
                     and (not active_only or s.info.status in s2.ACTIVE)]  # 2
        return sorted(infos, key=lambda i: i.updated_at, reverse=True)

    def _expired(self, state: s2._RunState, now: int) -> bool:
        t = state.terminated_at
        return t is not None and max(0, now - t) >= self.terminal_retention_ms

    def _prune_terminal_locked(self, now: int) -> None:
        if self.stale_after_ms is not None:  # 4: the lease
            for state in self._inner.values():
                info = state.info
                if info.status in s2.ACTIVE and now - info.updated_at >= self.stale_after_ms:
                    state.info = replace(info, status="failed", updated_at=now,
                                         last_error="lease expired")
                    state.terminated_at = now
        super()._prune_terminal_locked(now)

