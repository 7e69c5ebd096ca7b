"""S1 (`RunStore`, `s1.py`) and its fix (`FixedRunStore`, `fixed.py`) behind
`runbound.model.protocol.RunStore` (what every seed adapter shares: `seed_adapter`).

S1's mapping (`S1Mapping`, both adapters): `start` is the server's path: `put_run(new
record, "processing")`, or `update_run(status="processing", error_message=None)` for a
known id. `transition` is `update_run(status=...)` with the status's name, `heartbeat` is
`update_run()` (it stamps `updated_at`), `append_event` appends to `artifacts` (S1's only
per-run list). Statuses: pending <-> pending, processing <-> running, completed, failed,
cancelled by name (S1 stores any string, and never prunes "cancelled"); any other string
reads as RUNNING, since S1 treats every status but completed/failed as in progress.
`terminated_at` is S1's `updated_at` while terminal: S1 has no such field and keys its
TTL on `updated_at`. Policy: `max_runs` = `max_active + max_terminal` (S1's single cap
counts every run), `ttl_seconds` = `ttl`; the worker interval is set by
`start_cleanup_worker`, as the server sets it from its settings. No admission control, no
lease, no cursor, no status filter, no close: these calls do what S1 can.

The fix (`FixedS1Store`): S1's mapping, with the `terminated_at` the fix stamps, the
policy's limits, the fix's refusals (StoreFullError: AdmissionRefused; RunFinishedError:
IllegalTransition or NotActive; an active id: RunAlreadyActive), and its worker, which
can be stopped.

`fill` and `wrap_lock` are the bench's, never a check's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import ClassVar, TypeVar, cast

from runbound.model import rules, spec
from runbound.model.clock import Clock, sleep
from runbound.model.errors import AdmissionRefused, NotActive, RunAlreadyActive
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.records import Page, Run
from runbound.reference.seeds import fixed, s1
from runbound.reference.seeds.seed_adapter import SeedAdapter, SeedMapping, illegal, unknown

_NAMES = frozenset(s.value for s in Status)
T = TypeVar("T")
W = TypeVar("W")


# --- S1's private state: each reach in one place ----------------------------------------

@contextmanager
def _held(replica: s1.RunStore) -> Iterator[dict[str, s1.RunRecord]]:
    """S1's records under S1's lock."""
    with replica._lock:
        yield replica._runs


def fill(replica: s1.RunStore, records: Iterable[s1.RunRecord]) -> None:
    """The bench's: put `records` in as they are, without S1's prune (S1's writes sort
    or scan every run, so filling a large store through them takes quadratic time)."""
    with _held(replica) as runs:
        runs.update((r.run_id, r) for r in records)


def wrap_lock(replica: s1.RunStore, wrap: Callable[[threading.Lock], W]) -> W:
    """The bench's: put `wrap(lock)` in the place of S1's lock (to time how long each
    call holds it), before any other thread uses the replica; the wrapper is returned."""
    wrapper = wrap(replica._lock)
    replica._lock = cast(threading.Lock, wrapper)  # S1 only ever holds it with `with`
    return wrapper


class S1Mapping(SeedMapping):
    """S1's mapping (the module docstring), for the replica and its fix alike."""

    STATUS: ClassVar[dict[str, Status]] = {"pending": Status.PENDING,
                                           "processing": Status.RUNNING}

    def __init__(self, replica: s1.RunStore) -> None:
        self.replica = replica

    def records(self) -> list[s1.RunRecord]:
        with _held(self.replica) as runs:
            return list(runs.values())

    def set_interval(self, interval: float | None) -> None:
        """What the server does from its settings: S1's worker reads the store's."""
        self.replica._cleanup_interval = interval

    def worker_thread(self) -> threading.Thread | None:
        """The thread S1 last started for its worker."""
        return self.replica._cleanup_thread

    def status(self, name: str) -> Status:
        mapped = self.STATUS.get(name)
        if mapped is None:  # S1 stores any string; all but completed/failed are live to it
            mapped = Status(name) if name in _NAMES else Status.RUNNING
        return mapped

    def run(self, record: s1.RunRecord, seq: int = 0) -> Run:
        status = self.status(record.status)
        # the fix's records keep their own terminated_at; S1's have none
        terminated = getattr(record, "terminated_at",
                             record.updated_at if status.terminal else None)
        return Run(record.run_id, status, record.created_at, record.updated_at,
                   terminated_at=terminated, events=tuple(str(a) for a in record.artifacts),
                   seq=seq)

    def runs(self) -> list[Run]:
        return [self.run(r, i) for i, r in enumerate(self.records())]

    def sweep(self) -> None:
        self.replica.prune_expired()

    def call(self, fn: Callable[[], s1.RunRecord], run_id: object) -> Run:
        try:
            return self.run(fn())
        except s1.UnknownRunError:
            raise unknown(run_id) from None

    def start(self, run_id: str) -> Run:
        try:
            self.replica.get_run(run_id)
        except s1.UnknownRunError:
            self.replica.put_run(self.replica.new_record(run_id, "processing"))
            return self.run(self.replica.get_run(run_id))
        return self.call(lambda: self.replica.update_run(
            run_id, status="processing", error_message=None), run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        name = status.value if isinstance(status, Status) else status
        if name == "running":
            name = "processing"
        return self.call(lambda: self.replica.update_run(run_id, status=name), run_id)

    def heartbeat(self, run_id: str) -> Run:
        return self.call(lambda: self.replica.update_run(run_id), run_id)

    def append_event(self, run_id: str, payload: str) -> int:
        record = self.get(run_id)
        updated = self.call(lambda: self.replica.update_run(
            run_id, artifacts=[*record.events, payload]), run_id)
        return len(updated.events)

    def get(self, run_id: str) -> Run:
        return self.call(lambda: self.replica.get_run(run_id), run_id)

    def list_runs(self, limit: int) -> Page:
        return Page(tuple(self.run(r) for r in self.replica.list_runs(limit)), None)


class S1Store(SeedAdapter[S1Mapping]):
    """The S1 replica behind the store interface (see the module docstring)."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        bound = policy.max_terminal
        if bound is not None:
            bound += policy.max_active or 0
        self._release = threading.Event()
        self.replica = s1.RunStore(max_runs=bound, ttl_seconds=policy.ttl,
                                   cleanup_interval_seconds=None, clock=clock,
                                   sleep=self._sleep)
        self.mapping = S1Mapping(self.replica)

    def _sleep(self, seconds: float) -> None:
        # The replica's `time.sleep`: a wait on the store's clock (rule W2), so a virtual
        # clock drives S1's worker as it drives ours. S1 has no way to stop it, so
        # `release()` ends the thread by raising out of this sleep (SystemExit ends a
        # thread silently). What `time.sleep` refuses is refused here too, as it would be
        # in S1: a negative interval ends its worker with ValueError, it does not spin.
        if math.isnan(seconds):
            raise ValueError("Invalid value NaN (not a number)")
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        if math.isinf(seconds):
            raise OverflowError("timestamp out of range for platform time_t")
        if sleep(self._clock, seconds, self._release):
            raise SystemExit

    def release(self) -> None:
        """The one harness-only hook, S1 has no such call: end the worker threads S1
        itself cannot stop, and wait until they are gone (their exit must not overlap the
        caller's next steps). The checks call it after `close()`, when they are done with
        the store; it changes nothing a check observes before that."""
        threads = self._worker_threads()
        self._release.set()
        for thread in threads:
            thread.join(10.0)

    def _worker_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if getattr(getattr(t, "_target", None), "__self__", None) is self.replica]

    def start_cleanup_worker(self, interval: float) -> bool:
        before = self.mapping.worker_thread()
        self.mapping.set_interval(interval)
        self.replica.start_cleanup_worker()
        return self.mapping.worker_thread() is not before

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return False  # S1 has no way to stop its worker

    def cleanup_workers_alive(self) -> int:
        return sum(1 for t in self._worker_threads() if t.is_alive())

    def close(self) -> None:
        pass  # S1 has no close


class FixedS1Store(SeedAdapter[S1Mapping]):
    """`FixedRunStore` behind the store interface (see the module docstring)."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        self.replica = fixed.FixedRunStore(
            max_runs=None, ttl_seconds=policy.ttl, cleanup_interval_seconds=None,
            clock=clock, max_active=policy.max_active, max_terminal=policy.max_terminal,
            stale_after=policy.stale_after, max_artifacts=policy.max_events_per_run)
        self.mapping = S1Mapping(self.replica)

    def start(self, run_id: str) -> Run:
        try:
            old = self.replica.get_run(run_id)
        except s1.UnknownRunError:
            old = None
        if old is not None and old.status not in fixed.S1_FINISHED:
            raise RunAlreadyActive(run_id, self.mapping.status(old.status), rules.text("A1"))
        try:
            self.replica.put_run(self.replica.new_record(run_id, "processing"))
        except fixed.StoreFullError as full:
            raise AdmissionRefused(run_id, "absent", rules.text(
                "A2", active=full.active, max_active=self.policy.max_active)) from None
        return self.get(run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        try:
            return self.mapping.transition(run_id, status)
        except fixed.RunFinishedError as refused:
            raise illegal(run_id, self.mapping.status(refused.status), status) from None

    def heartbeat(self, run_id: str) -> Run:
        return self._active(run_id, "heartbeat", lambda: self.mapping.heartbeat(run_id))

    def append_event(self, run_id: str, payload: str) -> int:
        return self._active(run_id, "append_event",
                            lambda: self.mapping.append_event(run_id, payload))

    def _active(self, run_id: str, op: str, call: Callable[[], T]) -> T:
        """`call`, with the fix's refusal of a finished run as T2."""
        try:
            return call()
        except fixed.RunFinishedError as refused:
            raise NotActive(run_id, self.mapping.status(refused.status),
                            rules.text("T2", op=op)) from None

    def start_cleanup_worker(self, interval: float) -> bool:
        # the interval is runbound's argument (the seed reads it from its settings): W1
        self.mapping.set_interval(spec.check_interval(interval))
        return self.replica.start_cleanup_worker()

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self.replica.stop_cleanup_worker(timeout)

    def cleanup_workers_alive(self) -> int:
        return self.replica._worker.alive()  # the fix's worker: runbound's CleanupWorker

    def close(self) -> None:
        self.replica.stop_cleanup_worker(10.0)
