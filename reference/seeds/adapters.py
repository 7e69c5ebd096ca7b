"""Adapters: each seed replica behind `model.protocol.RunStore`, so the same checks run.

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
sends what the server sends: RUNNING `running()`, PENDING `waiting_hitl()` (an active
run not running), COMPLETED a `Done` frame, FAILED an `Error` frame, CANCELLED
`cancelled()`; `heartbeat` is `update(id, current status)`; `append_event` a `delta`
frame. Statuses: running <-> RUNNING, waiting_* <-> PENDING. Policy: TTL, cap and ring
buffer map to the constructor's limits (None: a limit past any test); there is no
admission control, lease, or worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from model import spec
from model.clock import Clock
from model.errors import RunAlreadyActive, StoreClosed, UnknownRun
from model.lifecycle import Status, as_status
from model.policy import Policy
from model.records import Page, Run, SweepResult
from reference.seeds import s1, s2

_FAR = 10**12  # a limit no check reaches: S2 cannot switch its limits off


def _unknown(run_id: object) -> UnknownRun:
    return UnknownRun(run_id, "absent", "V1: no run with this id is retained")


class _Adapter:
    """What both adapters share: a `len`/`snapshot` pair and a diff-based prune."""

    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock

    def _runs(self) -> list[Run]:
        raise NotImplementedError

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
        # The replica's worker sleeps here. S1 has no way to stop it, so `release()` (the
        # harness's, not S1's) ends the thread by raising out of its loop's sleep.
        if self._release.wait(seconds):
            raise SystemExit

    def release(self) -> None:
        """Harness only: end the worker threads S1 itself cannot stop."""
        self._release.set()

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
        return sum(1 for t in threading.enumerate()
                   if getattr(getattr(t, "_target", None), "__self__", None) is self.replica
                   and t.is_alive())

    def close(self) -> None:
        pass  # S1 has no close


class S2Store(_Adapter):
    """The S2 replica behind the store interface (see the module docstring)."""

    STATUS: ClassVar[dict[str, Status]] = {"running": Status.RUNNING,
                                           "waiting_approval": Status.PENDING,
                                           "waiting_hitl": Status.PENDING}

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

    def start(self, run_id: str) -> Run:
        self._open()
        if not self.replica.try_start(run_id):
            raise RunAlreadyActive(run_id, "active", "S1: turn already in progress")
        return self._read(run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        self._open()
        target = as_status(run_id, status)
        if target is Status.RUNNING:
            self.replica.running(run_id)
        elif target is Status.PENDING:
            self.replica.waiting_hitl(run_id)
        elif target is Status.COMPLETED:
            self.replica.push_frame(run_id, s2.DONE)
        elif target is Status.FAILED:
            self.replica.push_frame(run_id, s2.Frame("error", "failed", status="failed"))
        else:
            self.replica.cancelled(run_id)
        return self._read(run_id)

    def heartbeat(self, run_id: str) -> Run:
        self._open()
        info = self.replica.get(run_id)
        self.replica.update(run_id, info.status if info is not None else "running")
        return self._read(run_id)

    def append_event(self, run_id: str, payload: str) -> int:
        self._open()
        return self.replica.push_frame(run_id, s2.Frame("delta", payload))

    def get(self, run_id: str) -> Run:
        self._open()
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
