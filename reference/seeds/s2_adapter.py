"""S2 (`ChatRunRegistry`, `s2.py`) and its fix (`FixedChatRunRegistry`, `fixed.py`)
behind `runbound.model.protocol.RunStore` (what every seed adapter shares:
`seed_adapter`).

S2's mapping (`S2Mapping`, both adapters): `start` is `try_start` (False:
RunAlreadyActive); `transition` sends what the server sends: RUNNING `running()`, PENDING
`waiting_hitl()` (the nearest: an active run not running), COMPLETED a `Done` frame,
FAILED an `Error` frame, CANCELLED `cancelled()`; `heartbeat` is `update(id, current
status)`; `append_event` a `delta` frame. Statuses: running and waiting_* read as RUNNING
(S2 moves freely between them; it has no PENDING: a run it starts reads RUNNING where the
model says PENDING). Policy: TTL, cap and ring buffer map to the constructor's limits
(None: a limit past any test); there is no admission control, lease, or worker. S2 has no
close either: after the adapter's, every call is refused (L1).

The fix (`FixedS2Store`): S2's mapping, with `max_active` and the lease, and the fix's
refusals (RegistryFull: AdmissionRefused; an unknown id: UnknownRun; a finished run:
IllegalTransition or NotActive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar, TypeVar

from runbound.model import rules
from runbound.model.clock import Clock
from runbound.model.errors import (
    AdmissionRefused,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status, as_status
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities
from runbound.model.records import Page, Run
from runbound.reference.seeds import fixed, s2
from runbound.reference.seeds.seed_adapter import SeedAdapter, SeedMapping, illegal, unknown

_FAR = 10**12  # a limit no check reaches: S2 cannot switch its limits off
T = TypeVar("T")


def _limits(policy: Policy) -> dict[str, int]:
    """The registry's limits for `policy` (both registries take these)."""
    return {"terminal_retention_ms": _FAR if policy.ttl is None else int(policy.ttl * 1000),
            "max_retained_terminal": (_FAR if policy.max_terminal is None
                                      else policy.max_terminal),
            "max_events_per_run": (_FAR if policy.max_events_per_run is None
                                   else policy.max_events_per_run)}


class S2Mapping(SeedMapping):
    """S2's mapping (the module docstring), for the registry and its fix alike."""

    STATUS: ClassVar[dict[str, Status]] = {"running": Status.RUNNING,
                                           "waiting_approval": Status.RUNNING,
                                           "waiting_hitl": Status.RUNNING}

    def __init__(self, replica: s2.ChatRunRegistry) -> None:
        self.replica = replica
        self.closed = False

    # --- S2's private state: each reach in one method ------------------------------------

    @contextmanager
    def _states(self) -> Iterator[dict[str, s2._RunState]]:
        """The registry's map under its lock, held while a state is read: the registry
        changes its state objects in place."""
        with self.replica._lock:
            yield self.replica._inner

    def sweep(self) -> None:
        self.check_open()
        self.replica.force_prune(self.replica._now_ms())  # the PR's seam, at its own now

    # --- runs ------------------------------------------------------------------------------

    def check_open(self) -> None:
        if self.closed:
            raise StoreClosed("*", "closed", rules.text("L1"))

    def _run(self, cid: str, state: s2._RunState, seq: int = 0) -> Run:
        info = state.info
        status = self.STATUS.get(info.status) or Status(info.status)
        t = state.terminated_at
        return Run(cid, status, info.started_at / 1000, info.updated_at / 1000,
                   terminated_at=None if t is None else t / 1000,
                   events=tuple(f.payload or f.kind for _, f in state.events),
                   dropped_events=max(0, state.next_seq - 1 - len(state.events)), seq=seq)

    def runs(self) -> list[Run]:
        with self._states() as states:
            return [self._run(cid, st, i) for i, (cid, st) in enumerate(states.items())]

    def read(self, run_id: str, left: s2._RunState | None = None) -> Run:
        """The run as the registry holds it, or as `left` (its state before a call) if the
        registry holds it no more."""
        with self._states() as states:
            state = states.get(run_id) or left
            if state is None:
                raise unknown(run_id)
            return self._run(run_id, state)

    def status(self, run_id: str) -> Status | str:
        """The run's status, "absent" if the registry holds no such run."""
        try:
            return self.read(run_id).status
        except UnknownRun:
            return "absent"

    def as_left(self, run_id: str, call: Callable[[], object]) -> Run:
        """Make `call` and return the run as the call left it, even if the sweep that
        followed evicted it at once (the registry mutates its state objects in place)."""
        with self._states() as states:
            left = states.get(run_id)
        call()
        return self.read(run_id, left)

    # --- the calls, as the server makes them ---------------------------------------------

    def start(self, run_id: str) -> Run:
        self.check_open()
        if not self.replica.try_start(run_id):
            raise RunAlreadyActive(run_id, "active", rules.text("A1"))
        return self.read(run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        self.check_open()
        target = as_status(run_id, status)
        calls: dict[Status, Callable[[], object]] = {
            Status.RUNNING: lambda: self.replica.running(run_id),
            Status.PENDING: lambda: self.replica.waiting_hitl(run_id),
            Status.COMPLETED: lambda: self.replica.push_frame(run_id, s2.DONE),
            Status.FAILED: lambda: self.replica.push_frame(
                run_id, s2.Frame("error", "failed", status="failed")),
            Status.CANCELLED: lambda: self.replica.cancelled(run_id),
        }
        return self.as_left(run_id, calls[target])

    def heartbeat(self, run_id: str) -> Run:
        self.check_open()
        info = self.replica.get(run_id)
        status = info.status if info is not None else "running"
        return self.as_left(run_id, lambda: self.replica.update(run_id, status))

    def append_event(self, run_id: str, payload: str) -> int:
        self.check_open()
        return self.replica.push_frame(run_id, s2.Frame("delta", payload))

    def get(self, run_id: str) -> Run:
        self.check_open()
        if self.replica.get(run_id) is None:  # the registry's own read decides
            raise unknown(run_id)
        return self.read(run_id)

    def list_runs(self, limit: int) -> Page:
        self.check_open()
        infos = self.replica.list()[:limit]
        return Page(tuple(self.read(i.conversation_id) for i in infos), None)


class _S2Adapter(SeedAdapter[S2Mapping]):
    """What both S2 adapters are besides the calls on runs: no worker, and a close that
    is the adapter's own."""

    #: S2 sweeps only inside its calls: it has no cleanup worker to check
    capabilities: ClassVar[Capabilities] = Capabilities(worker=False, thread_safe=True)

    def start_cleanup_worker(self, interval: float) -> bool:
        self.mapping.check_open()
        return False  # S2 sweeps lazily only: there is no worker to start

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return False

    def cleanup_workers_alive(self) -> int:
        return 0

    def close(self) -> None:
        self.mapping.closed = True


class S2Store(_S2Adapter):
    """The S2 replica behind the store interface (see the module docstring)."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        self.replica = s2.ChatRunRegistry(**_limits(policy), clock=clock)
        self.mapping = S2Mapping(self.replica)


class FixedS2Store(_S2Adapter):
    """`FixedChatRunRegistry` behind the store interface (see the module docstring)."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        self.replica = fixed.FixedChatRunRegistry(
            max_active=policy.max_active,
            stale_after_ms=None if policy.stale_after is None else int(policy.stale_after
                                                                       * 1000),
            **_limits(policy), clock=clock)
        self.mapping = S2Mapping(self.replica)

    def _refused(self, run_id: str, call: Callable[[], T],
                 refusal: Callable[[Status | str], RunboundError]) -> T:
        """`call`, with the fix's refusals as runbound's: an unknown id (KeyError) is
        UnknownRun; a finished run (ValueError) is `refusal(its status)`, read after the
        call (the fix never changes a finished run), and so is a status argument that
        names none (InvalidArgument is a ValueError too)."""
        try:
            return call()
        except KeyError:
            raise unknown(run_id) from None
        except ValueError:
            raise refusal(self.mapping.status(run_id)) from None

    def start(self, run_id: str) -> Run:
        try:
            return self.mapping.start(run_id)
        except fixed.RegistryFull as full:
            raise AdmissionRefused(run_id, "absent", rules.text(
                "A2", active=full.active, max_active=self.policy.max_active)) from None

    def transition(self, run_id: str, status: Status | str) -> Run:
        return self._refused(run_id, lambda: self.mapping.transition(run_id, status),
                             lambda current: illegal(run_id, current, status))

    def heartbeat(self, run_id: str) -> Run:
        self.mapping.check_open()
        info = self.replica.get(run_id)
        if info is None:
            raise unknown(run_id)
        return self._refused(
            run_id, lambda: self.mapping.as_left(run_id, lambda: self.replica.update(
                run_id, info.status)),
            lambda current: NotActive(run_id, current, rules.text("T2", op="heartbeat")))

    def append_event(self, run_id: str, payload: str) -> int:
        return self._refused(
            run_id, lambda: self.mapping.append_event(run_id, payload),
            lambda current: NotActive(run_id, current, rules.text("T2", op="append_event")))
