"""S1: `RunStore` of the llms.txt MCP server (`src/lms_llmsTxt_mcp/runs.py`), replicated.

Copied as `seed-systems.md` describes it: a plain dict under one `threading.Lock` held for
each method's whole body; `put_run` upserts then prunes; `update_run` applies updates
without validation, stamps `updated_at` and prunes; `get_run` returns the stored record
itself; `list_runs` sorts every run by `updated_at`; pruning is TTL on `completed`/
`failed` keyed on `updated_at`, then the cap over `completed`/`failed` only, oldest
`updated_at` first; the worker checks `is_alive()` and starts a daemon thread without a
lock, loops forever, logs every failure, and has no stop. Defaults 200 / 86400 s / 300 s;
falsy or <= 0 turns a feature off.

Choices the original does not make:
- time is seconds from an injected `clock` (default `time.time`) rather than
  `datetime.now(timezone.utc)`, so checks run on a virtual clock;
- a reading that is NaN or infinite raises `ValueError`, as the original's `datetime`
  would (no datetime holds it): only a checker's faulty clock makes one, and it is how a
  check makes every sweep fail without touching the code;
- the worker's `time.sleep` is an injected `sleep` (the adapter waits on the store's
  clock), which does not change what the code does;
- `RunRecord` is a dataclass, not a pydantic model (no validation either way: the
  original assigns with `model_copy(update=...)`, which does not validate).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

logger = logging.getLogger("runbound.seeds.s1")


class UnknownRunError(KeyError):
    pass


@dataclass
class RunRecord:
    run_id: str
    status: str = "pending"  # pending | processing | completed | failed
    artifacts: list[Any] = field(default_factory=list)
    error_message: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class RunStore:
    def __init__(self, max_runs: int | None = 200, ttl_seconds: float | None = 86400,
                 cleanup_interval_seconds: float | None = 300, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._max_runs = max_runs if max_runs and max_runs > 0 else None
        self._ttl_seconds = ttl_seconds if ttl_seconds and ttl_seconds > 0 else None
        self._cleanup_interval = (cleanup_interval_seconds
                                  if cleanup_interval_seconds and cleanup_interval_seconds > 0
                                  else None)
        self._clock = clock
        self._sleep = sleep
        self._runs: dict[str, RunRecord] = {}
        self._lock = threading.Lock()
        self._cleanup_thread: threading.Thread | None = None

    def new_record(self, run_id: str, status: str = "processing") -> RunRecord:
        """`RunRecord(run_id=..., status=...)` with both timestamps defaulting to now."""
        now = self._now()
        return RunRecord(run_id=run_id, status=status, created_at=now, updated_at=now)

    def put_run(self, record: RunRecord) -> None:
        with self._lock:
            self._runs[record.run_id] = record
            self._prune_locked(self._now())

    def update_run(self, run_id: str, **updates: Any) -> RunRecord:
        with self._lock:
            record = self._runs.get(run_id)
            if record is None:
                raise UnknownRunError(f"Run ID {run_id} not found")
            updates.pop("run_id", None)
            updated = replace(record, **updates, updated_at=self._now())
            self._runs[run_id] = updated
            self._prune_locked(self._now())
            return updated

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            record = self._runs.get(run_id)
            if record is None:
                raise UnknownRunError(f"Run ID {run_id} not found")
            return record

    def list_runs(self, limit: int = 10) -> list[RunRecord]:
        with self._lock:
            runs = sorted(self._runs.values(), key=lambda r: r.updated_at, reverse=True)
            return runs[:limit]

    def prune_expired(self) -> int:
        now = self._now()
        with self._lock:
            return self._prune_locked(now)

    def _prune_locked(self, now: float) -> int:
        removed = 0
        if self._ttl_seconds:
            cutoff = now - self._ttl_seconds
            for run_id, record in list(self._runs.items()):
                if record.status in ("completed", "failed") and record.updated_at < cutoff:
                    del self._runs[run_id]
                    removed += 1
        if self._max_runs and len(self._runs) > self._max_runs:
            candidates = sorted(
                (r for r in self._runs.values() if r.status in ("completed", "failed")),
                key=lambda r: r.updated_at)
            for record in candidates:
                if len(self._runs) <= self._max_runs:
                    break
                del self._runs[record.run_id]
                removed += 1
        return removed

    def start_cleanup_worker(self) -> None:
        if not self._ttl_seconds or not self._cleanup_interval:
            return
        if self._cleanup_thread and self._cleanup_thread.is_alive():
            return
        thread = threading.Thread(target=self._loop, daemon=True)
        self._cleanup_thread = thread
        thread.start()

    def _now(self) -> float:
        """The clock, where the original calls `datetime.now(timezone.utc)`."""
        now = self._clock()
        if not math.isfinite(now):  # what datetime.fromtimestamp would refuse
            raise ValueError(f"the clock read {now!r}, not a time")
        return now

    def _loop(self) -> None:
        interval = self._cleanup_interval
        assert interval is not None
        while True:
            self._sleep(interval)
            try:
                removed = self.prune_expired()
                if removed:
                    logger.info("Pruned %s expired run(s)", removed)
            except Exception:
                logger.exception("Run cleanup failed")
