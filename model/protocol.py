"""The interface every store implements and every checker drives, and what a store may
declare it lacks (`Capabilities`).

The operations mirror `runbound.model.spec`, with the store reading `now` from its clock. A store
is built by a factory `(policy, clock) -> store`; checkers pass a `VirtualClock`.
`snapshot()` is for checking, not serving: it returns every retained run, visible or
not, so the checkers can see what the store really holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from runbound.model.clock import Clock
from runbound.model.invariants import CAPABILITY_MISSING, INVARIANTS
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.records import Page, Run, SweepResult


@runtime_checkable
class RunStore(Protocol):
    def start(self, run_id: str) -> Run: ...
    def transition(self, run_id: str, status: Status | str) -> Run: ...
    def heartbeat(self, run_id: str) -> Run: ...
    def append_event(self, run_id: str, payload: str) -> int: ...
    def get(self, run_id: str) -> Run: ...
    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page: ...
    def prune(self) -> SweepResult: ...
    def __len__(self) -> int: ...
    def snapshot(self) -> tuple[Run, ...]: ...
    def start_cleanup_worker(self, interval: float) -> bool: ...
    def stop_cleanup_worker(self, timeout: float | None = None) -> bool: ...
    def cleanup_workers_alive(self) -> int: ...
    def close(self) -> None: ...


StoreFactory = Callable[[Policy, Clock], RunStore]


class Forwarding(ABC):
    """The calls on runs, each handed to `_call(op, *args)`: the one way to write a store
    that stands for another (a store's process over the wire, a recording). The worker
    calls and `close` are each proxy's own."""

    @abstractmethod
    def _call(self, op: str, *args: Any) -> Any:
        """Make the call `op(*args)` on the store this one stands for; its result."""

    def start(self, run_id: str) -> Run:
        return self._call("start", run_id)  # type: ignore[no-any-return]

    def transition(self, run_id: str, status: Status | str) -> Run:
        return self._call("transition", run_id, status)  # type: ignore[no-any-return]

    def heartbeat(self, run_id: str) -> Run:
        return self._call("heartbeat", run_id)  # type: ignore[no-any-return]

    def append_event(self, run_id: str, payload: str) -> int:
        return self._call("append_event", run_id, payload)  # type: ignore[no-any-return]

    def get(self, run_id: str) -> Run:
        return self._call("get", run_id)  # type: ignore[no-any-return]

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        return self._call("list_runs", limit, status, cursor)  # type: ignore[no-any-return]

    def prune(self) -> SweepResult:
        return self._call("prune")  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._call("len")  # type: ignore[no-any-return]

    def snapshot(self) -> tuple[Run, ...]:
        return self._call("snapshot")  # type: ignore[no-any-return]


def release(store: object) -> None:
    """End what only the harness can end. The S1 replica's worker has no stop, so its
    adapter offers `release()` (docs/conformance.md: the one hook a store may have); a
    store without it has nothing to end here."""
    hook = getattr(store, "release", None)
    if callable(hook):
        hook()


def dispose(store: RunStore, *, close: Callable[[], object] | None = None,
            on_error: Callable[[Exception], object] | None = None) -> None:
    """Close `store`, then `release` it, even when the close raised: how every checker
    and harness lets a store go. `close`: the caller's own way to close it (a check that
    watches the close); `on_error`: what to do with an error of the close (default:
    raise it, after the release)."""
    try:
        (close or store.close)()
    except Exception as error:
        if on_error is None:
            raise
        on_error(error)
    finally:
        release(store)


#: the capability each call needs: one map, for every checker (`Capabilities`)
NEEDS = {"start_cleanup_worker": "worker", "stop_cleanup_worker": "worker",
         "cleanup_workers_alive": "worker", "worker": "worker", "append_event": "events",
         "heartbeat": "heartbeat"}


@dataclass(frozen=True)
class Capabilities:
    """What a store has. The defaults are everything a full store has, but durability."""

    #: a cleanup worker (`start_cleanup_worker` and the rest): I11, I16, I18
    worker: bool = True
    #: `append_event` and the ring buffer: I12
    events: bool = True
    #: `heartbeat`
    heartbeat: bool = True
    #: a restart (`reopen()`, or a new store from the factory) keeps every run: I17
    durable: bool = False
    #: safe to call from many threads at once: the concurrent check (I19)
    thread_safe: bool = False
    #: the store keeps times only to this many seconds (e.g. 0.001 for milliseconds): the
    #: checks move their clock in whole multiples of it (0: any step)
    clock_granularity: float = 0.0

    def skipped(self) -> dict[str, str]:
        """The properties left out (those needing what this store lacks), with the reason."""
        return {i: CAPABILITY_MISSING[p.needs] for i, p in INVARIANTS.items()
                if p.needs is not None and not getattr(self, p.needs)}

    def allows(self, op: str) -> bool:
        """May a check call `op` on a store that declares this?"""
        return bool(getattr(self, NEEDS.get(op, ""), True))
