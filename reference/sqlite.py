"""SqliteRunStore: the durable, embedded default. One file (or `:memory:`), WAL.

Rules of this module:
- Every call checks in the spec's order (`specs/lifecycle.md`, "The order of checks"):
  L1 under `_lock` (`_open`), then its arguments with the spec's own checks, then `_tx`:
  one clock reading (C1: NaN or an infinity is ClockError before anything is touched),
  one transaction (`BEGIN IMMEDIATE` for a mutation, so two processes on one file
  serialize), `now = max(reading, the mark kept in the file)`, the mark raised, the lazy
  sweep, the operation. A refused call rolls back to a savepoint taken after the mark was
  raised: its lazy sweep and work are undone (I10), the raised mark is committed (C1).
- The mark is durable: reads raise it too, with a write only when the reading is above
  it (see `_tx` for why those writes may skip the fsync).
- Retention touches only what it removes: the lease sweep and TTL expiry are range
  queries on their partial indexes (none at all without a lease or a TTL), confirmed row
  by row with the model's own `spec.stale` / `spec.expired`; the cap takes its victims
  from the front of the eviction index; run counts live in `meta`, kept by triggers, so
  `len` and admission control are O(1). Listing walks `seq` (or `status, seq`).
- `_lock` serializes this object's threads on its one connection; other processes are
  serialized by SQLite's own locking (busy timeout `BUSY_TIMEOUT`).
- The cleanup worker (W3) sweeps with no busy wait inside SQLite: it tries, and while
  another connection holds the write lock it waits on its own stop event between tries,
  so `stop_cleanup_worker()` and `close()` never wait for a blocked sweep.
- A restart is `reopen()`: a new store on the same file, which keeps everything, the
  clock's mark included (I17).
"""

from __future__ import annotations

import atexit
import functools
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

from runbound.model import rules, spec
from runbound.model.clock import Clock, sleep
from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    InvalidArgument,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status, as_status, check_transition
from runbound.model.policy import Policy
from runbound.model.records import Page, Run, SweepResult
from runbound.reference.worker import CleanupWorker, WorkerMixin

#: how long a call waits for another connection's write lock (seconds)
BUSY_TIMEOUT = 30.0
#: the cleanup worker's waits between tries while another connection holds the write
#: lock: the first, and the longest (it doubles), in seconds. Latencies, nothing more:
#: a stop wakes the worker at once whatever the wait.
_RETRY_FIRST, _RETRY_MAX = 0.001, 0.1
#: how often the worker, waiting for `_lock` (held by a call of ours that is itself
#: waiting on another connection), looks at its stop event (seconds)
_POLL = 0.005

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


def _reading(clock: Clock, who: str) -> float:
    """C1: the one clock reading of a call, refused if it is not a finite number."""
    value = clock()
    try:
        finite = isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:  # an int too large for a float is no more finite than inf
        finite = False
    if not finite:
        raise ClockError(who, "n/a", rules.text("C1", reading=repr(value)))
    return float(value)


def _bound(now: float, span: float) -> float:
    """The largest column value `x` a range query must include so that it finds every row
    with `not now < x + span` (the model's TTL and lease tests): `now - span`, widened by
    a few ulps for the rounding of the model's sum and of this difference. The query
    returns a superset; each row is then confirmed with the model's test itself."""
    return (now - span) + 4 * math.ulp(max(abs(now), abs(span)))


def _busy(error: sqlite3.OperationalError) -> bool:
    return error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    """Open `path` as a run store, or say why not with a typed error (D1) naming it."""
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                             timeout=BUSY_TIMEOUT)
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(SCHEMA)  # idempotent: every process may run it
    except sqlite3.Error as error:
        if db is not None:
            db.close()
        raise InvalidArgument("*", "n/a", f"D1: cannot open {path!r} as a SQLite run "
                                          f"store: {error}") from None
    return db


class _WorkerClock:
    """The store's clock as its cleanup worker sees it: the same readings, and sleeps
    through `runbound.model.clock.sleep` on the store's clock (W2). It also keeps, per thread, the
    stop event the worker sleeps on: the worker's sweep looks at it to give way to a stop
    (W3). Each worker thread has an event of its own, so a sweep of a thread winding down
    is never revived by a later start."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._local = threading.local()

    def __call__(self) -> float:
        return self._clock()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self._local.stop = stop
        return sleep(self._clock, seconds, stop)

    def stop_event(self) -> threading.Event:
        """The calling worker thread's stop event (a fresh one outside a worker)."""
        stop = getattr(self._local, "stop", None)
        return stop if isinstance(stop, threading.Event) else threading.Event()


class SqliteRunStore(WorkerMixin):
    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock = time.time,
                 path: str = ":memory:", *, synchronous: str = "FULL") -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidArgument("*", "n/a", f"D2: synchronous must be OFF, NORMAL, FULL or "
                                              f"EXTRA, got {synchronous!r}")
        self.policy = policy
        self.path = path
        # C2: wall time by default, which survives a reboot (time.monotonic restarts at
        # each boot, so a durable file's timestamps would jump back)
        self._clock = clock
        # FULL (the default): an acknowledged call survives even a power cut
        self._synchronous = synchronous
        self._db = _connect(path, synchronous)
        # _lock guards _db, _closed and _mark: one call at a time on the one connection
        self._lock = threading.Lock()
        self._closed = False
        #: the highest mark this object has committed: a lower bound of the file's (which
        #: only grows), so a read whose reading is not above it need not write
        self._mark = -math.inf
        self._worker_clock = _WorkerClock(clock)
        self._worker = CleanupWorker(self._sweep_in_background, self._worker_clock)

    # --- the operations ------------------------------------------------------------

    def start(self, run_id: str) -> Run:
        with self._open():
            rid = spec.check_run_id(run_id)
            with self._tx(rid) as now:
                old = self._row(rid)
                if old is not None and old.active:
                    raise RunAlreadyActive(rid, old.status,
                                           rules.text("A1"))
                if old is not None:
                    self._db.execute("DELETE FROM runs WHERE run_id = ?", (rid,))
                active = self._meta("active")
                if self.policy.max_active is not None and active >= self.policy.max_active:
                    raise AdmissionRefused(rid, "absent" if old is None else old.status,
                                           rules.text("A2", active=active,
                                                      max_active=self.policy.max_active))
                seq = self._meta("next_seq")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'",
                                 (seq + 1,))
                run = Run(rid, Status.PENDING, created_at=now, updated_at=now, seq=seq)
                self._db.execute(f"INSERT INTO runs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 (rid, seq, run.status.value, now, now, None, "[]", 0))
                return run

    def transition(self, run_id: str, status: Status | str) -> Run:
        with self._open():
            rid = spec.check_run_id(run_id)
            target = as_status(rid, status)
            with self._tx(rid) as now:
                old = self._visible(rid, now)
                check_transition(rid, old.status, target)
                new = replace(old, status=target, updated_at=now,
                              terminated_at=now if target.terminal else None)
                self._update(new)
                if target.terminal:
                    self._enforce_cap()
                return new

    def heartbeat(self, run_id: str) -> Run:
        with self._open():
            rid = spec.check_run_id(run_id)
            with self._tx(rid) as now:
                new = replace(self._active_run(rid, now, "heartbeat"), updated_at=now)
                self._update(new)
                return new

    def append_event(self, run_id: str, payload: str) -> int:
        with self._open():
            rid = spec.check_run_id(run_id)
            text = spec.check_payload(rid, payload)
            with self._tx(rid) as now:
                old = self._active_run(rid, now, "append_event")
                self._update(replace(spec.buffer_event(old, text, self.policy),
                                     updated_at=now))
                return old.dropped_events + len(old.events) + 1

    def get(self, run_id: str) -> Run:
        with self._open():
            rid = spec.check_run_id(run_id)
            with self._tx(rid, write=False) as now:
                return self._visible(rid, now)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        with self._open():
            count = spec.check_limit(limit)
            wanted = None if status is None else as_status("*", status)
            below = spec.parse_cursor(cursor)
            top = math.inf if below is None else below
            with self._tx("*", write=False) as now:
                if wanted is None:
                    rows = self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE seq < ? "
                                            "ORDER BY seq DESC", (top,))
                else:
                    rows = self._db.execute(f"SELECT {COLUMNS} FROM runs WHERE status = ? "
                                            "AND seq < ? ORDER BY status DESC, seq DESC",
                                            (wanted.value, top))
                return spec.first_page((_run(row) for row in rows), count, self.policy,
                                       now)

    def prune(self) -> SweepResult:
        with self._open(), self._tx("*", sweep=False) as now:
            return self._sweep(now)

    def __len__(self) -> int:
        with self._open():
            (total,) = self._db.execute("SELECT SUM(value) FROM meta "
                                        "WHERE key IN ('active', 'terminal')").fetchone()
            return int(total)

    def snapshot(self) -> tuple[Run, ...]:
        with self._open():
            return tuple(_run(r) for r in
                         self._db.execute(f"SELECT {COLUMNS} FROM runs ORDER BY seq"))

    # --- the worker and the store's life -------------------------------------------

    def start_cleanup_worker(self, interval: float) -> bool:
        # under _lock, like every call: ordered against close(), so no worker starts on a
        # closed store
        with self._open():
            return self._worker.start(spec.check_interval(interval))

    def close(self) -> None:
        """Mark the store closed, then stop the worker (as MemoryRunStore does): a
        `start_cleanup_worker` racing this finds the store closed, never a stopped
        worker on an open store. The worker's sweeps check `_closed` under `_lock`, so
        the connection is closed here at once."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
        self._worker.stop(timeout=10.0)

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

    def _sweep_in_background(self) -> SweepResult | None:
        """The worker's `prune()`, never blocked inside SQLite (W3): each try takes the
        write lock without waiting (busy timeout 0); while another connection holds it,
        the worker waits on its own stop event and tries again, up to BUSY_TIMEOUT, as a
        call would. A stop (or close) ends it at once, and no sweep begins after it."""
        stop = self._worker_clock.stop_event()
        delay = _RETRY_FIRST
        give_up = time.monotonic() + BUSY_TIMEOUT
        while not stop.is_set():
            # a call of ours may hold _lock while it waits on another connection
            if not self._lock.acquire(timeout=_POLL):
                continue
            try:
                if self._closed:
                    return None
                self._db.execute("PRAGMA busy_timeout = 0")
                try:
                    with self._tx("*", sweep=False) as now:
                        return self._sweep(now)
                except sqlite3.OperationalError as error:
                    if not _busy(error) or time.monotonic() > give_up:
                        raise
                finally:
                    self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            finally:
                self._lock.release()
            stop.wait(delay)
            delay = min(2 * delay, _RETRY_MAX)
        return None

    # --- one transaction per call --------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[None]:
        """Step 1 (L1), holding `_lock` for the whole call."""
        with self._lock:
            if self._closed:
                raise StoreClosed("*", "closed", rules.text("L1"))
            yield

    @contextmanager
    def _tx(self, who: str, *, write: bool = True, sweep: bool = True) -> Iterator[float]:
        """Steps 3 to 5 of a call whose arguments are checked, `_lock` held: read the
        clock once (C1), begin, fix `now` (never below the file's mark) and raise the
        mark, sweep if this is a mutation and the policy is lazy; commit, or on a refusal
        undo all but the raised mark. Any other failure rolls back everything."""
        reading = _reading(self._clock, who)
        if not write and reading <= self._mark:
            # the file's mark is at least ours: nothing to raise, a plain read (which
            # another process's writes do not block, in WAL)
            self._db.execute("BEGIN")
            try:
                yield max(reading, self._meta_float("clock"))
            finally:
                self._db.execute("COMMIT")  # nothing was written: commit is rollback
            return
        # A read that raises the mark writes it, and commits it without the fsync of
        # synchronous=FULL: in WAL, NORMAL loses only the latest commits on a power cut,
        # and a lost mark raise is harmless there (the wall clock, C2, is past it after
        # the reboot); a process crash loses nothing either way.
        relaxed = not write and self._synchronous in ("FULL", "EXTRA")
        if relaxed:
            self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = self._meta_float("clock")
                now = max(stored, reading)
                if reading > stored:
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'clock'", (now,))
                self._db.execute("SAVEPOINT call")
                try:
                    if write and sweep and self.policy.lazy:
                        self._sweep(now)
                    yield now
                except RunboundError:
                    # a refusal changes no run (I10), but the mark it raised stays (C1)
                    self._db.execute("ROLLBACK TO call")
                    self._db.execute("COMMIT")
                    self._mark = now
                    raise
                self._db.execute("COMMIT")
                self._mark = now
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        finally:
            if relaxed:
                self._db.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _meta_float(self, key: str) -> float:
        return float(self._db.execute("SELECT value FROM meta WHERE key = ?",
                                      (key,)).fetchone()[0])

    def _meta(self, key: str) -> int:
        return int(self._meta_float(key))

    # --- retention, over indexes ---------------------------------------------------

    def _sweep(self, now: float) -> SweepResult:
        """The model's `_sweep`: reap stale active runs, drop expired terminal ones, then
        enforce the cap; each step reads only the rows it changes (and a few ulps more)."""
        policy = self.policy
        reaped: list[str] = []
        if policy.stale_after is not None:
            candidates = self._db.execute(
                f"SELECT {COLUMNS} FROM runs WHERE terminated_at IS NULL AND updated_at <= ? "
                "ORDER BY updated_at, seq", (_bound(now, policy.stale_after),)).fetchall()
            for run in map(_run, candidates):
                if spec.stale(run, policy, now):
                    self._db.execute("UPDATE runs SET status = ?, updated_at = ?, "
                                     "terminated_at = ? WHERE run_id = ?",
                                     (Status.FAILED.value, now, now, run.run_id))
                    reaped.append(run.run_id)
        expired: list[str] = []
        if policy.ttl is not None:  # after reaping: a reaped run's TTL starts now
            candidates = self._db.execute(
                f"SELECT {COLUMNS} FROM runs WHERE terminated_at IS NOT NULL AND "
                "terminated_at <= ? ORDER BY terminated_at, seq",
                (_bound(now, policy.ttl),)).fetchall()
            expired = [run.run_id for run in map(_run, candidates)
                       if spec.expired(run, policy, now)]
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
            raise UnknownRun(run_id, "absent", rules.text("V1"))
        if spec.expired(run, self.policy, now):
            raise UnknownRun(run_id, run.status, rules.text("V2"))
        return run

    def _active_run(self, run_id: str, now: float, op: str) -> Run:
        run = self._visible(run_id, now)
        if not run.active:
            raise NotActive(run_id, run.status, rules.text("T2", op=op))
        return run

    def _update(self, run: Run) -> None:
        self._db.execute("UPDATE runs SET status = ?, updated_at = ?, terminated_at = ?, "
                         "events = ?, dropped = ? WHERE run_id = ?",
                         (run.status.value, run.updated_at, run.terminated_at,
                          json.dumps(list(run.events)), run.dropped_events, run.run_id))


@functools.cache
def _files() -> str:
    """The checks' directory of store files: made on first use (importing this module
    makes nothing), removed when the process exits."""
    path = tempfile.mkdtemp(prefix="runbound-sqlite-")
    atexit.register(shutil.rmtree, path, True)
    return path


_count = itertools.count()


def on_disk(policy: Policy, clock: Clock) -> SqliteRunStore:
    """A factory for the checks: each store on a new file of its own, on disk (so a
    restart, `reopen()`, finds it again), removed when the process exits. No fsync: the
    checks restart the process, not the machine (the SIGKILL test uses the default)."""
    return SqliteRunStore(policy, clock, f"{_files()}/{next(_count)}.sqlite3",
                          synchronous="OFF")
