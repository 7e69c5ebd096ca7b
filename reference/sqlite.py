"""SqliteRunStore: the durable, embedded default. One file (or `:memory:`), WAL.

Rules of this module:
- Every call is one transaction (`BEGIN IMMEDIATE` for a mutation, so two processes on
  one file serialize), opened by `_tx`, which also reads the clock once and raises `now`
  to the high-water mark kept in the file. A refused call rolls its transaction back,
  lazy sweep included (I10).
- Retention and listing walk indexes, never the table: the terminal index is in the
  model's eviction order, the lease index in `updated_at` order, listing walks `seq`
  (or `status, seq`); run counts live in `meta`, kept by triggers, so `len` and
  admission control are O(1).
- `_lock` serializes this object's threads on its one connection; other processes are
  serialized by SQLite's own locking (busy timeout 30 s).
- A restart is `reopen()`: a new store on the same file, which keeps everything (I17).
"""

from __future__ import annotations

import atexit
import itertools
import json
import math
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import TracebackType

from model import spec
from model.clock import Clock
from model.errors import (
    AdmissionRefused,
    NotActive,
    RunAlreadyActive,
    StoreClosed,
    UnknownRun,
)
from model.lifecycle import Status, as_status, check_transition
from model.policy import Policy
from model.records import Page, Run, SweepResult
from reference.worker import CleanupWorker, WorkerMixin

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    terminated_at REAL,
    events TEXT NOT NULL,
    dropped INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_eviction ON runs (terminated_at, seq)
    WHERE terminated_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_lease ON runs (updated_at, seq) WHERE terminated_at IS NULL;
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_seq', 1), ('clock', -1e308),
    ('active', 0), ('terminal', 0);
CREATE TRIGGER IF NOT EXISTS runs_insert AFTER INSERT ON runs BEGIN
    UPDATE meta SET value = value + 1
        WHERE key = CASE WHEN NEW.terminated_at IS NULL THEN 'active' ELSE 'terminal' END;
END;
CREATE TRIGGER IF NOT EXISTS runs_delete AFTER DELETE ON runs BEGIN
    UPDATE meta SET value = value - 1
        WHERE key = CASE WHEN OLD.terminated_at IS NULL THEN 'active' ELSE 'terminal' END;
END;
CREATE TRIGGER IF NOT EXISTS runs_finish AFTER UPDATE OF terminated_at ON runs
    WHEN OLD.terminated_at IS NULL AND NEW.terminated_at IS NOT NULL BEGIN
    UPDATE meta SET value = value - 1 WHERE key = 'active';
    UPDATE meta SET value = value + 1 WHERE key = 'terminal';
END;
"""
COLUMNS = "run_id, seq, status, created_at, updated_at, terminated_at, events, dropped"


def _run(row: tuple[object, ...]) -> Run:
    run_id, seq, status, created, updated, terminated, events, dropped = row
    return Run(str(run_id), Status(status), float(created), float(updated),  # type: ignore[arg-type]
               None if terminated is None else float(terminated),  # type: ignore[arg-type]
               tuple(json.loads(str(events))), int(dropped), int(seq))  # type: ignore[call-overload]


class SqliteRunStore(WorkerMixin):
    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock = time.monotonic,
                 path: str = ":memory:", *, synchronous: str = "FULL") -> None:
        self.policy = policy
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA: {synchronous}")
        # FULL (the default): an acknowledged call survives even a power cut
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._synchronous = synchronous
        with self._lock:
            self._db.executescript(SCHEMA)  # idempotent: every process may run it
        self._worker = CleanupWorker(self.prune, self._clock)

    # --- the operations ------------------------------------------------------------

    def start(self, run_id: str) -> Run:
        rid = spec.check_run_id(run_id)
        with self._tx() as now:
            old = self._row(rid)
            if old is not None and old.active:
                raise RunAlreadyActive(rid, old.status, "S1: a run with this id is already active")
            if old is not None:
                self._db.execute("DELETE FROM runs WHERE run_id = ?", (rid,))
            active = self._meta("active")
            if self.policy.max_active is not None and active >= self.policy.max_active:
                raise AdmissionRefused(rid, "absent" if old is None else old.status,
                                       f"S2: {active} active runs, max_active is "
                                       f"{self.policy.max_active}")
            seq = self._meta("next_seq")
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            run = Run(rid, Status.PENDING, created_at=now, updated_at=now, seq=seq)
            self._db.execute(f"INSERT INTO runs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (rid, seq, run.status.value, now, now, None, "[]", 0))
            return run

    def transition(self, run_id: str, status: Status | str) -> Run:
        rid = spec.check_run_id(run_id)
        target = as_status(rid, status)
        with self._tx() as now:
            old = self._visible(rid, now)
            check_transition(rid, old.status, target)
            new = replace(old, status=target, updated_at=now,
                          terminated_at=now if target.terminal else None)
            self._update(new)
            if target.terminal:
                self._enforce_cap()
            return new

    def heartbeat(self, run_id: str) -> Run:
        rid = spec.check_run_id(run_id)
        with self._tx() as now:
            new = replace(self._active_run(rid, now, "heartbeat"), updated_at=now)
            self._update(new)
            return new

    def append_event(self, run_id: str, payload: str) -> int:
        rid = spec.check_run_id(run_id)
        text = spec.check_payload(rid, payload)
        with self._tx() as now:
            old = self._active_run(rid, now, "append_event")
            self._update(replace(spec.buffer_event(old, text, self.policy), updated_at=now))
            return old.dropped_events + len(old.events) + 1

    def get(self, run_id: str) -> Run:
        rid = spec.check_run_id(run_id)
        with self._tx(write=False) as now:
            return self._visible(rid, now)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        count = spec.check_limit(limit)
        wanted = None if status is None else as_status("*", status)
        below = spec.parse_cursor(cursor)
        top = math.inf if below is None else below
        with self._tx(write=False) as now:
            if wanted is None:
                rows = self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE seq < ? "
                                        "ORDER BY seq DESC", (top,))
            else:
                rows = self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE status = ? AND "
                                        "seq < ? ORDER BY status DESC, seq DESC",
                                        (wanted.value, top))
            found: list[Run] = []
            for row in rows:
                run = _run(row)
                if spec.expired(run, self.policy, now):
                    continue
                if len(found) == count:
                    return Page(tuple(found), str(found[-1].seq))
                found.append(run)
            return Page(tuple(found), None)

    def prune(self) -> SweepResult:
        with self._tx(sweep=False) as now:
            return self._sweep(now)

    def __len__(self) -> int:
        with self._tx(write=False):
            return self._meta("active") + self._meta("terminal")

    def snapshot(self) -> tuple[Run, ...]:
        with self._tx(write=False):
            return tuple(_run(r) for r in
                         self._db.execute(f"SELECT {COLUMNS} FROM runs ORDER BY seq"))

    # --- the worker and the store's life -------------------------------------------

    def start_cleanup_worker(self, interval: float) -> bool:
        interval = spec.check_interval(interval)
        with self._lock:
            self._check_open()
            return self._worker.start(interval)

    def close(self) -> None:
        self._worker.stop(timeout=10.0)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def reopen(self) -> SqliteRunStore:
        """The process restarts: a new store on the same file."""
        self.close()
        return SqliteRunStore(self.policy, self._clock, self.path,
                              synchronous=self._synchronous)

    def __enter__(self) -> SqliteRunStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- one transaction per call --------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("*", "closed", "L1: the store is closed")

    @contextmanager
    def _tx(self, *, write: bool = True, sweep: bool = True) -> Iterator[float]:
        """Lock, begin, fix `now` (never below the file's high-water mark), sweep if the
        policy is lazy; commit, or roll back everything if the call is refused."""
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                now = max(self._clock(), self._meta_float("clock"))
                if write:
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'clock'", (now,))
                    if sweep and self.policy.lazy:
                        self._sweep(now)
                yield now
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _meta_float(self, key: str) -> float:
        return float(self._db.execute("SELECT value FROM meta WHERE key = ?",
                                      (key,)).fetchone()[0])

    def _meta(self, key: str) -> int:
        return int(self._meta_float(key))

    # --- retention, over indexes ---------------------------------------------------

    def _sweep(self, now: float) -> SweepResult:
        reaped: list[str] = []
        if self.policy.stale_after is not None:
            for row in self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE terminated_at "
                                        "IS NULL ORDER BY updated_at, seq").fetchall():
                run = _run(row)
                if not spec.stale(run, self.policy, now):
                    break  # in updated_at order: the rest are fresher
                self._update(replace(run, status=Status.FAILED, updated_at=now,
                                     terminated_at=now))
                reaped.append(run.run_id)
        expired: list[str] = []
        for row in self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE terminated_at IS "
                                    "NOT NULL ORDER BY terminated_at, seq").fetchall():
            run = _run(row)
            if not spec.expired(run, self.policy, now):
                break
            expired.append(run.run_id)
        self._db.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in expired])
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)), self._enforce_cap())

    def _enforce_cap(self) -> tuple[str, ...]:
        cap = self.policy.max_terminal
        excess = 0 if cap is None else self._meta("terminal") - cap
        if excess <= 0:
            return ()
        victims = [r for (r,) in self._db.execute(
            "SELECT run_id FROM runs WHERE terminated_at IS NOT NULL "
            "ORDER BY terminated_at, seq LIMIT ?", (excess,))]
        self._db.executemany("DELETE FROM runs WHERE run_id = ?", [(r,) for r in victims])
        return tuple(sorted(victims))

    # --- rows ----------------------------------------------------------------------

    def _row(self, run_id: str) -> Run | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE run_id = ?",
                               (run_id,)).fetchone()
        return None if row is None else _run(row)

    def _visible(self, run_id: str, now: float) -> Run:
        run = self._row(run_id)
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

    def _update(self, run: Run) -> None:
        self._db.execute("UPDATE runs SET status = ?, updated_at = ?, terminated_at = ?, "
                         "events = ?, dropped = ? WHERE run_id = ?",
                         (run.status.value, run.updated_at, run.terminated_at,
                          json.dumps(list(run.events)), run.dropped_events, run.run_id))



_files = tempfile.mkdtemp(prefix="runbound-sqlite-")
_count = itertools.count()
atexit.register(shutil.rmtree, _files, True)


def on_disk(policy: Policy, clock: Clock) -> SqliteRunStore:
    """A factory for the checks: each store on a new file of its own, on disk (so a
    restart, `reopen()`, finds it again), removed when the process exits. No fsync: the
    checks restart the process, not the machine (the SIGKILL test uses the default)."""
    return SqliteRunStore(policy, clock, f"{_files}/{next(_count)}.sqlite3",
                          synchronous="OFF")
