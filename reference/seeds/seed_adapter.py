"""What the seed adapters share: each puts a seed replica, or its fix, behind
`runbound.model.protocol.RunStore`, so the same checks run.

An adapter maps, and never mends: statuses and errors are translated, calls are made the
way the seed's own server makes them, and whatever the replica does is reported as it is.
Where the seed has no such operation, the adapter says what it does instead.

Each seed has one mapping (`SeedMapping`: a record as a `Run`, runbound's calls as the
seed's server makes them, and each reach into the replica's private state in one method
of its own), which the replica's adapter and the fix's adapter share; the fix's adapter
adds the fix's refusals, worded from `runbound.model.rules` as every store words them.
The mappings are in `s1_adapter` and `s2_adapter`, with their adapters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from runbound.model import rules, spec
from runbound.model.clock import Clock
from runbound.model.errors import IllegalTransition, UnknownRun
from runbound.model.lifecycle import TRANSITIONS, Status
from runbound.model.policy import Policy
from runbound.model.records import Page, Run, SweepResult


def unknown(run_id: object) -> UnknownRun:
    return UnknownRun(run_id, "absent", rules.text("V1"))


def illegal(run_id: str, current: Status | str, target: object) -> IllegalTransition:
    """T1 for a move a fix refused, worded as the model words it; `current` is the run's
    status, or "absent" where no run is left to name one."""
    moves = TRANSITIONS[current] if isinstance(current, Status) else frozenset()
    allowed = ", ".join(sorted(s.value for s in moves)) or (
        "none: it is terminal" if isinstance(current, Status) else "none")
    return IllegalTransition(run_id, current, rules.text("T1", current=current, target=target,
                                                         allowed=allowed))


class SeedMapping(ABC):
    """One seed's calls on runs, as its server makes them, with its records as `Run`s."""

    @abstractmethod
    def runs(self) -> list[Run]:
        """Every run the replica holds, mapped, in the replica's order."""

    @abstractmethod
    def sweep(self) -> None:
        """The replica's own prune."""

    @abstractmethod
    def start(self, run_id: str) -> Run: ...

    @abstractmethod
    def transition(self, run_id: str, status: Status | str) -> Run: ...

    @abstractmethod
    def heartbeat(self, run_id: str) -> Run: ...

    @abstractmethod
    def append_event(self, run_id: str, payload: str) -> int: ...

    @abstractmethod
    def get(self, run_id: str) -> Run: ...

    @abstractmethod
    def list_runs(self, limit: int) -> Page: ...


M = TypeVar("M", bound=SeedMapping)


class SeedAdapter(Generic[M]):
    """The calls on runs, each its seed's mapping's, and a prune that reports what the
    seed's own sweep removed. The worker calls and `close` are each adapter's own."""

    thread_safe = True
    mapping: M

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock

    def start(self, run_id: str) -> Run:
        return self.mapping.start(run_id)

    def transition(self, run_id: str, status: Status | str) -> Run:
        return self.mapping.transition(run_id, status)

    def heartbeat(self, run_id: str) -> Run:
        return self.mapping.heartbeat(run_id)

    def append_event(self, run_id: str, payload: str) -> int:
        return self.mapping.append_event(run_id, payload)

    def get(self, run_id: str) -> Run:
        return self.mapping.get(run_id)

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        return self.mapping.list_runs(limit)  # no seed has a status filter or a cursor

    def prune(self) -> SweepResult:
        before = {r.run_id: r for r in self.mapping.runs()}
        self.mapping.sweep()
        after = {r.run_id for r in self.mapping.runs()}
        gone = sorted(set(before) - after)
        now = self._clock()
        expired = tuple(r for r in gone if spec.expired(before[r], self.policy, now))
        return SweepResult((), expired, tuple(r for r in gone if r not in expired))

    def snapshot(self) -> tuple[Run, ...]:
        return tuple(self.mapping.runs())

    def __len__(self) -> int:
        return len(self.mapping.runs())
