"""Every error path, on every store: the right typed error, a message naming the run, its
state and the rule, and the store unchanged afterwards (I10)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from runbound.model.clock import VirtualClock
from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    IllegalTransition,
    InvalidArgument,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.protocol import RunStore
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis_server import on_local_server
from runbound.reference.sqlite import on_disk

STORES: dict[str, Callable[[Policy, VirtualClock], RunStore]] = {
    "memory": MemoryRunStore,
    "sqlite": on_disk,
    "redis": on_local_server,
}

POLICY = Policy(ttl=10.0, max_terminal=3, max_active=2, max_events_per_run=2,
                stale_after=100.0)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, clock: VirtualClock) -> Any:
    s = STORES[request.param](POLICY, clock)
    s.start("live")
    s.transition("live", Status.RUNNING)
    s.start("done")
    s.transition("done", Status.CANCELLED)
    yield s
    s.close()


#: (call, expected error, run id named in the message, rule named in the message)
ERRORS: list[tuple[Callable[[Any], object], type[RunboundError], str, str]] = [
    (lambda s: s.start("live"), RunAlreadyActive, "live", "A1"),
    (lambda s: (s.start("x2"), s.start("x3")), AdmissionRefused, "x3", "A2"),
    (lambda s: s.transition("live", Status.PENDING), IllegalTransition, "live", "T1"),
    (lambda s: s.transition("done", Status.RUNNING), IllegalTransition, "done", "T1"),
    (lambda s: s.transition("nope", Status.RUNNING), UnknownRun, "nope", "V1"),
    (lambda s: s.transition("live", "paused"), InvalidArgument, "live", "R2"),
    (lambda s: s.heartbeat("done"), NotActive, "done", "T2"),
    (lambda s: s.append_event("done", "x"), NotActive, "done", "T2"),
    (lambda s: s.append_event("live", 42), InvalidArgument, "live", "R3"),
    (lambda s: s.append_event("live", "\udfff"), InvalidArgument, "live", "R3"),
    (lambda s: s.get("nope"), UnknownRun, "nope", "V1"),
    (lambda s: s.get(""), InvalidArgument, "''", "R1"),
    (lambda s: s.start(17), InvalidArgument, "17", "R1"),
    (lambda s: s.start("y" * 129), InvalidArgument, "yyy", "R1"),
    (lambda s: s.list_runs(0), InvalidArgument, "*", "L2"),
    (lambda s: s.start("a\ud800"), InvalidArgument, "a", "R1"),
    (lambda s: s.list_runs(2**63), InvalidArgument, "*", "L2"),
    (lambda s: s.list_runs(10**5000), InvalidArgument, "*", "L2"),
    (lambda s: s.list_runs(2, "paused"), InvalidArgument, "*", "R2"),
    (lambda s: s.list_runs(2, None, 99), InvalidArgument, "*", "L3"),
    (lambda s: s.list_runs(2, None, "\u00b2"), InvalidArgument, "*", "L3"),
    (lambda s: s.list_runs(2, None, "9" * 5000), InvalidArgument, "*", "L3"),
    (lambda s: s.list_runs(2, None, str(2**63)), InvalidArgument, "*", "L3"),
    (lambda s: s.start_cleanup_worker(-1), InvalidArgument, "*", "W1"),
    (lambda s: s.start_cleanup_worker(10**400), InvalidArgument, "*", "W1"),
]


@pytest.mark.parametrize(("call", "error", "run", "rule"), ERRORS,
                         ids=[f"{e[1].__name__}-{i}" for i, e in enumerate(ERRORS)])
def test_error_is_typed_named_and_changes_nothing(
        store: Any, call: Callable[[Any], object], error: type[RunboundError],
        run: str, rule: str) -> None:
    if error is AdmissionRefused:
        store.start("x2")  # fill the second active slot; the call below starts one more
        call = lambda s: s.start("x3")  # noqa: E731
    before, size = store.snapshot(), len(store)
    with pytest.raises(error) as raised:
        call(store)
    message = str(raised.value)
    assert run in message and rule in message and "state:" in message
    assert store.snapshot() == before and len(store) == size


def test_expired_run_is_unknown_and_refusal_changes_nothing(
        store: Any, clock: VirtualClock) -> None:
    clock.advance(10.0)
    before = store.snapshot()
    with pytest.raises(UnknownRun) as raised:
        store.get("done")  # a read does not sweep: the run is retained but invisible
    assert "V2" in str(raised.value)
    assert store.snapshot() == before


def test_refused_call_undoes_its_lazy_sweep(clock: VirtualClock) -> None:
    """A lazy sweep inside a refused call is rolled back with it."""
    for make in STORES.values():
        s = make(Policy(stale_after=5.0), clock)
        s.start("a")
        clock.advance(6.0)  # "a" is stale: the next mutation's sweep would reap it
        before = s.snapshot()
        with pytest.raises(UnknownRun):
            s.heartbeat("nope")
        assert s.snapshot() == before
        assert s.prune().reaped == ("a",)  # the reap was only deferred
        s.close()


def test_calls_after_close_raise_store_closed(store: Any) -> None:
    """L1 wins: a closed store refuses every call with StoreClosed, bad arguments too;
    only close, stop_cleanup_worker and cleanup_workers_alive still answer."""
    store.close()
    store.close()  # twice is fine
    calls: list[Callable[[], object]] = [
        lambda: store.start("z"), lambda: store.get("live"), lambda: store.list_runs(1),
        lambda: store.prune(), lambda: store.start_cleanup_worker(1.0),
        lambda: len(store), lambda: store.snapshot(), lambda: store.start(""),
        lambda: store.list_runs(0), lambda: store.transition(7, "paused"),
        lambda: store.start_cleanup_worker(-1)]
    for call in calls:
        with pytest.raises(StoreClosed):
            call()
    assert store.stop_cleanup_worker(1.0) is False
    assert store.cleanup_workers_alive() == 0


@pytest.mark.parametrize("reading", [math.nan, math.inf, -math.inf])
def test_a_non_finite_clock_reading_is_refused_and_changes_nothing(
        store: Any, clock: VirtualClock, reading: float) -> None:
    """C1: NaN or an infinity is ClockError, naming the rule, with the store unchanged;
    once the clock reads right again the store works as before."""
    before, size = store.snapshot(), len(store)
    clock.fault(reading)
    calls: list[Callable[[], object]] = [
        lambda: store.start("new"), lambda: store.get("live"),
        lambda: store.transition("live", Status.COMPLETED), lambda: store.prune()]
    for call in calls:
        with pytest.raises(ClockError) as raised:
            call()
        assert "C1" in str(raised.value)
    clock.fault(None)
    assert store.snapshot() == before and len(store) == size
    assert store.start("new").created_at == clock()


def test_a_clock_that_steps_back_never_revives_an_expired_run(
        store: Any, clock: VirtualClock) -> None:
    """C1: a read raises the mark too, so a run seen expired stays expired when the
    clock steps back, and new runs are stamped no earlier than the mark."""
    clock.advance(10.0)  # "done" (ttl 10) has expired
    with pytest.raises(UnknownRun):
        store.get("done")
    clock.step(-5.0)
    with pytest.raises(UnknownRun):
        store.get("done")
    assert all(r.run_id != "done" for r in store.list_runs(10).runs)
    assert store.start("later").created_at == clock() + 5.0
