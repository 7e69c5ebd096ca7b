"""The stateful check: the reference store passes it, and each deliberately broken store
is caught by it, on the invariant its defect breaks, with a short program."""

from __future__ import annotations

import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from model.invariants import INVARIANTS, VIOLATIONS
from model.stateful import machine_for, machine_settings
from model.verify import check_store
from reference import broken
from reference.memory import MemoryRunStore
from reference.redis_server import on_local_server
from reference.sqlite import on_disk

#: the whole check, every invariant enforced at once: pytest collects these unittest cases
TestMemoryRunStore = machine_for(MemoryRunStore, name="MemoryMachine").TestCase
#: the durable store also keeps everything across restarts (I17)
TestSqliteRunStore = machine_for(on_disk, name="SqliteMachine", restarts=True).TestCase
#: and so does the Redis store, on a redis-server the tests start
TestRedisRunStore = machine_for(on_local_server, name="RedisMachine", restarts=True).TestCase

#: I19 (linearizability) has its own check: tests/test_linearizability.py
CASES = [(cls, iid) for cls in broken.BROKEN for iid in cls.breaks if iid != "I19"]


@pytest.mark.parametrize(("store", "invariant"), CASES,
                         ids=[f"{c.__name__}-{i}" for c, i in CASES])
def test_stateful_check_catches_broken_store(store: type, invariant: str) -> None:
    """Generation alone (no shrinking, to keep the suite fast) finds the defect; the
    budget is large because it stops at the first violation."""
    machine = machine_for(store, enforce={invariant})
    with pytest.raises(VIOLATIONS[invariant]):
        run_state_machine_as_test(machine, settings=machine_settings(
            database=None, max_examples=3000, phases=[Phase.generate]))


def test_stateful_check_shrinks_to_the_shortest_program() -> None:
    """With shrinking, the counterexample is the minimal one: start two runs under
    max_active=1 (the policy line, then two calls)."""
    machine = machine_for(broken.CountsOnlyTerminalStore, enforce={"I3"})
    with pytest.raises(VIOLATIONS["I3"]) as raised:
        run_state_machine_as_test(machine, settings=machine_settings(database=None))
    trace = raised.value.trace
    assert len(trace) == 3, trace
    assert "max_active=1" in trace[0] and trace[1].startswith("start(")


def test_machine_reports_each_distinct_invariant() -> None:
    """Enforcing everything, a store breaking two invariants is reported for both: the
    exception classes differ, so Hypothesis keeps them apart."""
    assert len({VIOLATIONS[i] for i in INVARIANTS}) == len(INVARIANTS)
    report = check_store("counts-only-terminal", broken.CountsOnlyTerminalStore,
                         expected={"I3"}, exact=False, invariants=["I3", "I6"],
                         settings=machine_settings(database=None, max_examples=300))
    verdicts = {c.invariant: c.verdict for c in report.checks}
    assert verdicts == {"I3": "fail", "I6": "pass"}
    assert report.as_expected


def test_verify_passes_the_reference_on_every_invariant() -> None:
    """Every invariant but I17: the reference lives in memory, so a restart loses it
    all, and verify says so (the durable stores are the ones that keep I17)."""
    report = check_store("memory", MemoryRunStore, expected={"I17"},
                         settings=machine_settings(database=None, max_examples=40))
    verdicts = {c.invariant: c.verdict for c in report.checks}
    assert verdicts == {i: "fail" if i == "I17" else "pass" for i in INVARIANTS}
    assert all(c.steps > 0 for c in report.checks) and report.as_expected
