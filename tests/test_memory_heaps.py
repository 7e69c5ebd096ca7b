"""MemoryRunStore's heaps with lazy deletion, against the model over long programs: long
enough that dead heap entries pile up past the slack and the heaps are rebuilt, which
the stateful check's short programs never reach. Every call's answer and every retained
run must equal the model's, and the heaps must stay bounded by the live runs."""

from __future__ import annotations

import random

import pytest

from runbound.model import spec
from runbound.model.clock import VirtualClock
from runbound.model.errors import RunboundError
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.reference.memory import _SLACK, MemoryRunStore

POLICIES = [
    Policy(ttl=3.0, max_terminal=20, max_active=30, max_events_per_run=2, stale_after=4.0),
    Policy(ttl=0.0, stale_after=1.0, max_terminal=5),
    Policy(ttl=2.0, stale_after=3.0, sweep=SweepMode.BACKGROUND),
    Policy(max_terminal=3, stale_after=2.0, sweep=SweepMode.BOTH),
]


def _program(rng: random.Random, calls: int) -> list[tuple[str, tuple[object, ...], float]]:
    ids = [f"r{i}" for i in range(40)]
    drawn: list[tuple[str, tuple[object, ...], float]] = []
    for _ in range(calls):
        rid, k = rng.choice(ids), rng.random()
        step = rng.choice((0.0, 0.0, 0.25, 0.5, -0.5))  # a clock that stands and steps back
        call: tuple[str, tuple[object, ...]] = (
            ("start", (rid,)) if k < 0.25
            else ("transition", (rid, rng.choice(list(Status)))) if k < 0.45
            else ("heartbeat", (rid,)) if k < 0.75  # many dead lease entries
            else ("append_event", (rid, "e")) if k < 0.85
            else ("get", (rid,)) if k < 0.92
            else ("list_runs", (7, rng.choice((None, Status.FAILED, Status.RUNNING))))
            if k < 0.97 else ("prune", ()))
        drawn.append((*call, step))
    return drawn


@pytest.mark.parametrize("policy", POLICIES, ids=["all", "ttl0", "background", "both"])
def test_the_heaps_agree_with_the_model_and_stay_bounded(policy: Policy) -> None:
    clock = VirtualClock(0.0)
    store = MemoryRunStore(policy, clock)
    state = spec.initial(policy)
    most = {"lease": 0, "terminal": 0}  # the most live runs each heap has served
    pushed = 0
    for i, (op, args, step) in enumerate(_program(random.Random(7), 6_000)):
        clock.step(step)
        state, expected = spec.apply(state, op, args, clock())
        try:
            actual: object = getattr(store, op)(*args)
        except RunboundError as error:
            actual = error
        where = f"call {i}: {op}{args}"
        if isinstance(expected, RunboundError):
            assert type(actual) is type(expected) and str(actual) == str(expected), where
        elif op == "list_runs":
            assert actual.runs == expected.runs, where  # type: ignore[attr-defined]
        else:
            assert actual == expected, where
        assert store.snapshot() == state.runs, where
        pushed += op in ("start", "transition", "heartbeat", "append_event") and not (
            isinstance(expected, RunboundError))
        for name, heap, live in (("lease", store._lease, store._active_count),
                                 ("terminal", store._terminal, store._terminal_count)):
            most[name] = max(most[name], live)
            if heap is not None:  # dead entries are dropped: bounded by the live, not calls
                assert len(heap) <= 2 * most[name] + _SLACK + 1, where
    assert pushed > 4 * (2 * max(most.values()) + _SLACK)  # far more than the bound
