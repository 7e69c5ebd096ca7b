"""Adapters: each seed replica behind `runbound.model.protocol.RunStore`, so the same checks run.

An adapter maps, and never mends: statuses and errors are translated, calls are made the
way the seed's own server makes them, and whatever the replica does is reported as it is.
Where the seed has no such operation, the adapter says what it does instead.

S1 (`RunStore`): `start` is the server's path: `put_run(new record, "processing")`, or
`update_run(status="processing", error_message=None)` for a known id. `transition` is
`update_run(status=...)` with the status's name, `heartbeat` is `update_run()` (it stamps
`updated_at`), `append_event` appends to `artifacts` (S1's only per-run list).
Statuses: pending <-> pending, processing <-> running, completed, failed, cancelled by
name (S1 stores any string, and never prunes "cancelled"); any other string reads as
RUNNING, since S1 treats every status but completed/failed as in progress. `terminated_at` is S1's
`updated_at` while terminal: S1 has no such field and keys its TTL on `updated_at`.
Policy: `max_runs` = `max_active + max_terminal` (S1's single cap counts every run),
`ttl_seconds` = `ttl`; the worker interval is set by `start_cleanup_worker`, as the
server sets it from its settings. No admission control, no lease, no cursor, no status
filter, no close: these calls do what S1 can.

S2 (`ChatRunRegistry`): `start` is `try_start` (False: RunAlreadyActive); `transition`
sends what the server sends: RUNNING `running()`, PENDING `waiting_hitl()` (the nearest:
an active run not running), COMPLETED a `Done` frame, FAILED an `Error` frame, CANCELLED
`cancelled()`; `heartbeat` is `update(id, current status)`; `append_event` a `delta`
frame. Statuses: running and waiting_* read as RUNNING (S2 moves freely between them;
it has no PENDING: a run it starts reads RUNNING where the model says PENDING).
Policy: TTL, cap and ring buffer map to the constructor's limits (None: a limit past any
test); there is no admission control, lease, or worker.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from runbound.model import spec
from runbound.model.clock import Clock, sleep
from runbound.model.errors import (
    AdmissionRefused,
    IllegalTransition,
    NotActive,
    RunAlreadyActive,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status, as_status
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities
from runbound.model.records import Page, Run, SweepResult
from runbound.reference.seeds import fixed, s1, s2

_FAR = 10**12  # a limit no check reaches: S2 cannot switch its limits off


def _unknown(run_id: object) -> UnknownRun:
    return UnknownRun(run_id, "absent", "V1: no run with this id is retained")


class _Adapter(ABC):
    """What both adapters share: a `len`/`snapshot` pair and a diff-based prune."""

    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock

    @abstractmethod
    def _runs(self) -> list[Run]:
        """Every run the replica holds, mapped."""

    def snapshot(self) -> tuple[Run, ...]:
        return tuple(self._runs())

    def __len__(self) -> int:
        return len(self._runs())

    def _diff_sweep(self, sweep: Callable[[], object]) -> SweepResult:
        before = {r.run_id: r for r in self._runs()}
        sweep()
        after = {r.run_id for r in self._runs()}
        gone = sorted(set(before) - after)
        now = self._clock()
        expired = tuple(r for r in gone if spec.expired(before[r], self.policy, now))
        return SweepResult((), expired, tuple(r for r in gone if r not in expired))


class S1Store(_Adapter):
    """The S1 replica behind the store interface (see the module docstring)."""

    STATUS: ClassVar[dict[str, Status]] = {"pending": Status.PENDING,
                                           "processing": Status.RUNNING}

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        bound = policy.max_terminal
        if bound is not None:
            bound += policy.max_active or 0
        self._release = threading.Event()
        self.replica = s1.RunStore(max_runs=bound, ttl_seconds=policy.ttl,
                                   cleanup_interval_seconds=None, clock=clock,
                                   sleep=self._sleep)

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

    def _run(self, record: s1.RunRecord, seq: int = 0) -> Run:
        status = self.STATUS.get(record.status)
        if status is None:  # S1 stores any string; all but completed/failed are live to it
            known = record.status in {s.value for s in Status}
            status = Status(record.status) if known else Status.RUNNING
        return Run(record.run_id, status, record.created_at, record.updated_at,
                   terminated_at=record.updated_at if status.terminal else None,
                   events=tuple(str(a) for a in record.artifacts), seq=seq)

    def _runs(self) -> list[Run]:
        with self.replica._lock:
            records = list(self.replica._runs.values())
        return [self._run(r, i) for i, r in enumerate(records)]

    def _call(self, fn: Callable[[], s1.RunRecord], run_id: object) -> Run:
        try:
            return self._run(fn())
        except s1.UnknownRunError:
            raise _unknown(run_id) from None

    def start(self, run_id: str) -> Run:
        try:
            self.replica.get_run(run_id)
        except s1.UnknownRunError:
            self.replica.put_run(self.replica.new_record(run_id, "processing"))
            return self._run(self.replica.get_run(run_id))
        return self._call(lambda: self.replica.update_run(
            run_id, status="processing", error_message=None), run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        name = status.value if isinstance(status, Status) else status
        if name == "running":
            name = "processing"
        return self._call(lambda: self.replica.update_run(run_id, status=name), run_id)

    def heartbeat(self, run_id: str) -> Run:
        return self._call(lambda: self.replica.update_run(run_id), run_id)

    def append_event(self, run_id: str, payload: str) -> int:
        record = self._call(lambda: self.replica.get_run(run_id), run_id)
        updated = self._call(lambda: self.replica.update_run(
            run_id, artifacts=[*record.events, payload]), run_id)
        return len(updated.events)

    def get(self, run_id: str) -> Run:
        return self._call(lambda: self.replica.get_run(run_id), run_id)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        return Page(tuple(self._run(r) for r in self.replica.list_runs(limit)), None)

    def prune(self) -> SweepResult:
        return self._diff_sweep(self.replica.prune_expired)

    def start_cleanup_worker(self, interval: float) -> bool:
        before = self.replica._cleanup_thread
        self.replica._cleanup_interval = interval  # the server sets it from its settings
        self.replica.start_cleanup_worker()
        return self.replica._cleanup_thread is not before

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return False  # S1 has no way to stop its worker

    def cleanup_workers_alive(self) -> int:
        return sum(1 for t in self._worker_threads() if t.is_alive())

    def close(self) -> None:
        pass  # S1 has no close


class S2Store(_Adapter):
    """The S2 replica behind the store interface (see the module docstring)."""

    #: S2 sweeps only inside its calls: it has no cleanup worker to check
    capabilities: ClassVar[Capabilities] = Capabilities(worker=False, thread_safe=True)

    STATUS: ClassVar[dict[str, Status]] = {"running": Status.RUNNING,
                                           "waiting_approval": Status.RUNNING,
                                           "waiting_hitl": Status.RUNNING}

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        self._closed = False
        self.replica = s2.ChatRunRegistry(
            terminal_retention_ms=_FAR if policy.ttl is None else int(policy.ttl * 1000),
            max_retained_terminal=_FAR if policy.max_terminal is None else policy.max_terminal,
            max_events_per_run=(_FAR if policy.max_events_per_run is None
                                else policy.max_events_per_run),
            clock=clock)

    def _run(self, cid: str, state: Any = None, seq: int = 0) -> Run:
        if state is None:
            state = self.replica._inner.get(cid)
            if state is None:
                raise _unknown(cid)
        info = state.info
        status = self.STATUS.get(info.status) or Status(info.status)
        t = state.terminated_at
        return Run(cid, status, info.started_at / 1000, info.updated_at / 1000,
                   terminated_at=None if t is None else t / 1000,
                   events=tuple(f.payload or f.kind for _, f in state.events),
                   dropped_events=max(0, state.next_seq - 1 - len(state.events)), seq=seq)

    def _runs(self) -> list[Run]:
        with self.replica._lock:
            return [self._run(cid, st, i)
                    for i, (cid, st) in enumerate(self.replica._inner.items())]

    def _read(self, run_id: str) -> Run:
        with self.replica._lock:
            return self._run(run_id)

    def _as_left(self, run_id: str, call: Callable[[], object]) -> Run:
        """Make `call` and return the run as the call left it, even if the sweep that
        followed evicted it at once (the registry mutates its state objects in place)."""
        with self.replica._lock:
            state = self.replica._inner.get(run_id)
        call()
        with self.replica._lock:
            state = self.replica._inner.get(run_id) or state
            if state is None:
                raise _unknown(run_id)
            return self._run(run_id, state)

    def start(self, run_id: str) -> Run:
        self._open()
        if not self.replica.try_start(run_id):
            raise RunAlreadyActive(run_id, "active", "A1: turn already in progress")
        return self._read(run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        self._open()
        target = as_status(run_id, status)
        calls: dict[Status, Callable[[], object]] = {
            Status.RUNNING: lambda: self.replica.running(run_id),
            Status.PENDING: lambda: self.replica.waiting_hitl(run_id),
            Status.COMPLETED: lambda: self.replica.push_frame(run_id, s2.DONE),
            Status.FAILED: lambda: self.replica.push_frame(
                run_id, s2.Frame("error", "failed", status="failed")),
            Status.CANCELLED: lambda: self.replica.cancelled(run_id),
        }
        return self._as_left(run_id, calls[target])

    def heartbeat(self, run_id: str) -> Run:
        self._open()
        info = self.replica.get(run_id)
        status = info.status if info is not None else "running"
        return self._as_left(run_id, lambda: self.replica.update(run_id, status))

    def append_event(self, run_id: str, payload: str) -> int:
        self._open()
        return self.replica.push_frame(run_id, s2.Frame("delta", payload))

    def get(self, run_id: str) -> Run:
        self._open()
        if self.replica.get(run_id) is None:  # the registry's own read decides
            raise _unknown(run_id)
        return self._read(run_id)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        self._open()
        infos = self.replica.list()[:limit]
        return Page(tuple(self._read(i.conversation_id) for i in infos), None)

    def prune(self) -> SweepResult:
        self._open()
        return self._diff_sweep(lambda: self.replica.force_prune(self.replica._now_ms()))

    def start_cleanup_worker(self, interval: float) -> bool:
        self._open()
        return False  # S2 sweeps lazily only: there is no worker to start

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return False

    def cleanup_workers_alive(self) -> int:
        return 0

    def close(self) -> None:
        self._closed = True

    def _open(self) -> None:
        if self._closed:
            raise StoreClosed("*", "closed", "L1: the store is closed")


# --- the fixed versions (reference/seeds/fixed.py) ----------------------------------

class FixedS1Store(S1Store):
    """`FixedRunStore` behind the store interface: S1's mapping, plus the fix's errors
    (StoreFullError: AdmissionRefused; RunFinishedError: IllegalTransition or NotActive)
    and its worker, which can be stopped."""

    replica: fixed.FixedRunStore

    def __init__(self, policy: Policy, clock: Clock) -> None:
        _Adapter.__init__(self, policy, clock)
        self._release = threading.Event()
        self.replica = fixed.FixedRunStore(
            max_runs=None, ttl_seconds=policy.ttl, cleanup_interval_seconds=None,
            clock=clock, max_active=policy.max_active, max_terminal=policy.max_terminal,
            stale_after=policy.stale_after, max_artifacts=policy.max_events_per_run)

    def _run(self, record: s1.RunRecord, seq: int = 0) -> Run:
        run = super()._run(record, seq)
        return replace(run, terminated_at=getattr(record, "terminated_at", None))

    def _fixed_call(self, fn: Callable[[], Run], finished: Callable[[], Exception]) -> Run:
        try:
            return fn()
        except fixed.RunFinishedError:
            raise finished() from None

    def start(self, run_id: str) -> Run:
        try:
            old = self.replica.get_run(run_id)
        except s1.UnknownRunError:
            old = None
        if old is not None and old.status not in fixed.S1_FINISHED:
            raise RunAlreadyActive(run_id, old.status, "A1: a run with this id is active")
        try:
            self.replica.put_run(self.replica.new_record(run_id, "processing"))
        except fixed.StoreFullError as full:
            raise AdmissionRefused(run_id, "absent", f"A2: {full}") from None
        return self.get(run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        return self._fixed_call(lambda: S1Store.transition(self, run_id, status),
                                lambda: IllegalTransition(run_id, "finished", "T1"))

    def heartbeat(self, run_id: str) -> Run:
        return self._fixed_call(lambda: S1Store.heartbeat(self, run_id),
                                lambda: NotActive(run_id, "finished", "T2"))

    def append_event(self, run_id: str, payload: str) -> int:
        try:
            return S1Store.append_event(self, run_id, payload)
        except fixed.RunFinishedError:
            raise NotActive(run_id, "finished", "T2") from None

    def start_cleanup_worker(self, interval: float) -> bool:
        # the interval is runbound's argument (the seed reads it from its settings): W1
        self.replica._cleanup_interval = spec.check_interval(interval)
        return self.replica.start_cleanup_worker()

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self.replica.stop_cleanup_worker(timeout)

    def cleanup_workers_alive(self) -> int:
        return self.replica._worker.alive()

    def close(self) -> None:
        self.replica.stop_cleanup_worker(10.0)


class FixedS2Store(S2Store):
    """`FixedChatRunRegistry` behind the store interface: S2's mapping, plus the fix's
    errors (RegistryFull: AdmissionRefused; an unknown id: UnknownRun; a finished run:
    IllegalTransition or NotActive)."""

    replica: fixed.FixedChatRunRegistry

    def __init__(self, policy: Policy, clock: Clock) -> None:
        _Adapter.__init__(self, policy, clock)
        self._closed = False
        self.replica = fixed.FixedChatRunRegistry(
            max_active=policy.max_active,
            stale_after_ms=None if policy.stale_after is None else int(policy.stale_after
                                                                       * 1000),
            terminal_retention_ms=_FAR if policy.ttl is None else int(policy.ttl * 1000),
            max_retained_terminal=_FAR if policy.max_terminal is None else policy.max_terminal,
            max_events_per_run=(_FAR if policy.max_events_per_run is None
                                else policy.max_events_per_run),
            clock=clock)

    def _guard(self, fn: Callable[[], Any], run_id: str, finished: Exception) -> Any:
        try:
            return fn()
        except KeyError:
            raise _unknown(run_id) from None
        except ValueError:
            raise finished from None

    def start(self, run_id: str) -> Run:
        try:
            return S2Store.start(self, run_id)
        except fixed.RegistryFull as full:
            raise AdmissionRefused(run_id, "absent", f"A2: {full}") from None

    def transition(self, run_id: str, status: Status | str) -> Run:
        run: Run = self._guard(lambda: S2Store.transition(self, run_id, status), run_id,
                               IllegalTransition(run_id, "finished", "T1"))
        return run

    def heartbeat(self, run_id: str) -> Run:
        self._open()
        info = self.replica.get(run_id)
        if info is None:
            raise _unknown(run_id)
        run: Run = self._guard(
            lambda: self._as_left(run_id, lambda: self.replica.update(run_id, info.status)),
            run_id, NotActive(run_id, info.status, "T2"))
        return run

    def append_event(self, run_id: str, payload: str) -> int:
        seq: int = self._guard(lambda: S2Store.append_event(self, run_id, payload), run_id,
                               NotActive(run_id, "finished", "T2"))
        return seq
