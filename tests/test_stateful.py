"""The stateful check: the reference store passes it, and each deliberately broken store
is caught by it, on the invariant its defect breaks, with a short program."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from runbound.model.check import counterexample as cx
from runbound.model.check.profiles import machine_settings
from runbound.model.check.replay import replay
from runbound.model.check.stateful import machine_for
from runbound.model.check.verify import check_invariant, check_store
from runbound.model.clock import Clock
from runbound.model.invariants import INVARIANTS, VIOLATIONS
from runbound.model.policy import Policy
from runbound.model.records import Run
from runbound.reference import broken
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis_server import on_local_server
from runbound.reference.sqlite import on_disk
from runbound.reference.worker import CleanupWorker

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


def test_counterexample_is_one_minimal_and_its_policy_simplified() -> None:
    """The reported program is 1-minimal (check/minimize.py: removing any single step makes
    it pass) and its policy keeps only what the failure needs: start two runs under
    max_active=1 (the policy line, then two calls)."""
    check = check_invariant(broken.CountsOnlyTerminalStore, "I3",
                            machine_settings(database=None, derandomize=True))
    found = check.counterexample
    assert check.verdict == "fail" and found is not None and found.minimal, check
    trace = cx.lines(found)
    assert trace[0] == "store = factory(Policy(max_active=1), VirtualClock())", trace
    assert found.calls == 2 and all(t.startswith("start(") for t in trace[1:3]), trace
    program = list(found.program)
    for i in range(1, len(program)):  # 1-minimal, checked here by replay too
        assert replay(broken.CountsOnlyTerminalStore, program[:i] + program[i + 1:],
                      {"I3"}) is None
    assert "2 active runs, max_active is 1" in check.differed


class NeverTicksStore(MemoryRunStore):
    """Its worker sleeps on real time, not on the store's clock (rule W2): under virtual
    time it never sweeps, whatever the interval says."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        self._worker = CleanupWorker(self.prune, time.monotonic)


class StopDoesNotJoinStore(MemoryRunStore):
    """stop_cleanup_worker() tells the worker to stop and returns at once."""

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self._worker.stop(0.0)


class SelfCountingStore(MemoryRunStore):
    """cleanup_workers_alive() answers from a flag it keeps, not from the threads: after
    stop it says 0 whatever runs."""

    started = False

    def start_cleanup_worker(self, interval: float) -> bool:
        self.started = super().start_cleanup_worker(interval) or self.started
        return self.started

    def cleanup_workers_alive(self) -> int:
        return int(self.started)


class LruStore(MemoryRunStore):
    """A read moves a terminal run to the back of the eviction order, as an LRU cache
    does: what the cap evicts then depends on what was read."""

    def get(self, run_id: str) -> Run:
        run = super().get(run_id)
        with self._lock:
            if run.terminal and run.run_id in self._by_id:
                self._set(run, replace(run, terminated_at=self._now()))
        return run


class AcceptsNanStore(MemoryRunStore):
    """Takes a NaN reading as the time (no rule C1)."""

    def _now(self, who: str = "*") -> float:
        now = self._clock()
        self._high = now if math.isnan(now) or now > self._high else self._high
        return self._high


@pytest.mark.parametrize(("store", "invariant"), [
    (NeverTicksStore, "E1"), (StopDoesNotJoinStore, "I16"), (SelfCountingStore, "I13"),
    (LruStore, "I14"), (AcceptsNanStore, "I13")],
    ids=["never-ticks", "stop-no-join", "self-counting", "lru", "nan"])
def test_the_wider_world_catches_what_the_narrow_one_missed(store: type, invariant: str
                                                             ) -> None:
    """Each defect independent testing found and the old machine could not reach: the
    worker run as a step of the machine on virtual time, threads counted by the checker,
    reads observed only at the end, a clock that reads NaN."""
    check = check_invariant(store, invariant, machine_settings(database=None,
                                                               derandomize=True))
    assert check.verdict == "fail", check


def test_a_worker_that_never_ticks_is_caught_on_the_store() -> None:
    """E1 on a store, not only on the model: its own worker runs on the virtual clock, and
    one that waits on real time instead (rule W2) is seen to from its own stack."""
    check = check_invariant(NeverTicksStore, "E1", machine_settings(database=None,
                                                                    derandomize=True))
    assert check.verdict == "fail" and "waits on real time" in check.differed, check
    assert check.counterexample is not None
    program = cx.lines(check.counterexample)
    assert program[0] == "store = factory(Policy(), VirtualClock())", program
    assert check.counterexample.calls == 1, program
    assert program[1].startswith("start_cleanup_worker("), program


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
    assert verdicts == {i: "fail" if i == "I17" else "pass" for i in INVARIANTS}, report
    assert all(c.steps > 0 for c in report.checks) and report.as_expected
