"""The seed replicas behave as `shared/seed-systems.md` describes, and the stateful check
finds the defects their reviews name."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from runbound.bench import TimedLock
from runbound.model import rules
from runbound.model.check.probes import (
    MAX_LOG_LINES_PER_HOUR,
    probe_failing_sweeps,
    probe_start_race,
)
from runbound.model.check.profiles import machine_settings
from runbound.model.check.stateful import machine_for
from runbound.model.clock import VirtualClock
from runbound.model.errors import RunboundError
from runbound.model.invariants import VIOLATIONS
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.protocol import StoreFactory
from runbound.reference.memory import MemoryRunStore
from runbound.reference.seeds import s1, s1_adapter, s2
from runbound.reference.seeds.s1_adapter import FixedS1Store, S1Store
from runbound.reference.seeds.s2_adapter import FixedS2Store, S2Store


def caught(factory: StoreFactory, invariant: str) -> None:
    machine = machine_for(factory, enforce={invariant})
    with pytest.raises(VIOLATIONS[invariant]):
        run_state_machine_as_test(machine, settings=machine_settings(
            database=None, max_examples=3000, phases=[Phase.generate]))


# --- the replicas are faithful ---------------------------------------------------------

def test_S1_prunes_only_completed_and_failed_keyed_on_updated_at(clock: VirtualClock) -> None:
    store = s1.RunStore(max_runs=2, ttl_seconds=10, clock=clock)
    for rid in ("a", "b", "c"):
        store.put_run(store.new_record(rid))
    assert len(store.list_runs(10)) == 3  # cap 2, but "processing" is never a candidate
    store.update_run("a", status="completed")
    assert [r.run_id for r in store.list_runs(10)] == ["b", "c"]  # "a" evicted; ties keep order
    clock.advance(11)
    store.update_run("b", status="failed")  # stamps updated_at now: TTL starts over
    clock.advance(5)
    assert store.prune_expired() == 0
    with pytest.raises(s1.UnknownRunError, match="Run ID zz not found"):
        store.get_run("zz")


def test_S1_defaults_and_falsy_limits() -> None:
    store = s1.RunStore()
    assert (store._max_runs, store._ttl_seconds, store._cleanup_interval) == (200, 86400, 300)
    off = s1.RunStore(max_runs=0, ttl_seconds=-1, cleanup_interval_seconds=0)
    assert (off._max_runs, off._ttl_seconds, off._cleanup_interval) == (None, None, None)


def test_S2_ttl_cap_duplicate_start_and_restart(clock: VirtualClock) -> None:
    """The PR's own tests, replayed on the replica: they pass."""
    reg = s2.ChatRunRegistry(terminal_retention_ms=5000, max_retained_terminal=2, clock=clock)
    assert reg.try_start("a") and not reg.try_start("a")  # duplicate start refused
    reg.push_frame("a", s2.DONE)
    clock.advance(4.9)
    reg.force_prune(reg._now_ms())
    assert reg.get("a") is not None  # kept within the window
    clock.advance(0.1)
    reg.force_prune(reg._now_ms())
    assert reg.get("a") is None  # swept past it
    assert reg.try_start("a")  # an evicted conversation starts again
    for cid in ("b", "c", "d"):
        reg.try_start(cid)
        reg.cancelled(cid)
        clock.advance(0.01)
    assert [i.conversation_id for i in reg.list()] == ["d", "c", "a"]  # cap 2, oldest out
    kept = reg.get("a")
    assert kept is not None and kept.status == "running"  # the active run is kept


def test_S2_late_frame_revives_a_finished_run_with_terminated_at_set(
        clock: VirtualClock) -> None:
    """No table: a tool frame after Done makes the run `running` again, but its
    terminated_at stays, so the sweep later evicts an active run."""
    reg = s2.ChatRunRegistry(terminal_retention_ms=1000, clock=clock)
    reg.try_start("a")
    reg.push_frame("a", s2.DONE)
    reg.running("a")
    clock.advance(2)
    reg.try_start("b")  # sweeps
    assert reg.get("a") is None


# --- the check finds what the reviews name -------------------------------------------

def test_S1_cap_is_exceeded_when_active_runs_dominate() -> None:
    caught(S1Store, "I2")


def test_S1_stuck_runs_are_never_reaped() -> None:
    caught(S1Store, "I15")


def test_S1_worker_cannot_be_stopped() -> None:
    caught(S1Store, "I16")


def test_S2_active_runs_are_unbounded() -> None:
    caught(S2Store, "I3")


def test_S2_adapter_maps_statuses(clock: VirtualClock) -> None:
    store = S2Store(Policy(), clock)
    assert store.start("a").status is Status.RUNNING
    assert store.transition("a", Status.PENDING).status is Status.RUNNING  # waiting_hitl
    assert store.transition("a", Status.COMPLETED).terminated_at == clock()
    store.close()


def refusals(store: object, calls: list[tuple[str, tuple[object, ...]]]) -> list[str]:
    """The message of each refusal among `calls` (it ends with the rule's text)."""
    out = []
    for op, args in calls:
        try:
            getattr(store, op)(*args)
        except RunboundError as error:
            out.append(str(error))
    return out


def worded(got: list[str], want: list[str]) -> bool:
    return len(got) == len(want) and all(g.endswith(w) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("factory", [FixedS1Store, FixedS2Store])
def test_the_fixes_refuse_in_the_words_of_the_rules_table(clock: VirtualClock,
                                                          factory: StoreFactory) -> None:
    store = factory(Policy(max_active=1), clock)
    got = refusals(store, [
        ("start", ("a",)), ("start", ("a",)), ("start", ("b",)),
        ("transition", ("a", Status.COMPLETED)), ("transition", ("a", Status.FAILED)),
        ("heartbeat", ("a",)), ("append_event", ("a", "e")), ("get", ("zz",))])
    store.close()
    want = [rules.text("A1"), rules.text("A2", active=1, max_active=1),
            rules.text("T1", current=Status.COMPLETED, target=Status.FAILED,
                       allowed="none: it is terminal"),
            rules.text("T2", op="heartbeat"), rules.text("T2", op="append_event"),
            rules.text("V1")]
    assert worded(got, want), got


def test_the_S2_adapter_refuses_in_the_words_of_the_rules_table(clock: VirtualClock) -> None:
    store = S2Store(Policy(), clock)
    store.start("a")
    before = refusals(store, [("start", ("a",)), ("get", ("zz",))])
    store.close()
    after = refusals(store, [("get", ("a",))])
    assert worded(before + after, [rules.text("A1"), rules.text("V1"), rules.text("L1")])


def test_the_bench_fills_S1_and_wraps_each_lock_through_one_accessor(
        clock: VirtualClock) -> None:
    replica = s1.RunStore(max_runs=1, ttl_seconds=None, clock=clock)
    s1_adapter.fill(replica, [s1.RunRecord(f"r{i}", "failed") for i in range(3)])
    assert len(replica.list_runs(10)) == 3  # as given: S1's prune (cap 1) did not run
    timed = s1_adapter.wrap_lock(replica, TimedLock)
    replica.list_runs(10)
    memory = MemoryRunStore(Policy(), clock)
    timed_memory = memory.wrap_lock(TimedLock)
    memory.start("a")
    assert len(timed.held) == 1 == len(timed_memory.held)


# --- restart and the worker probes ---------------------------------------------------

def test_restart_loses_every_run_in_memory() -> None:
    """I17, with restarts among the rules: in-memory stores lose everything."""
    for factory in (S1Store, MemoryRunStore):
        machine = machine_for(factory, enforce={"I17"}, restarts=True)
        with pytest.raises(VIOLATIONS["I17"]):
            run_state_machine_as_test(machine, settings=machine_settings(
                database=None, max_examples=3000, phases=[Phase.generate]))


def test_S1_concurrent_starts_start_two_workers() -> None:
    """The real race, no hook: S1's unlocked check-then-start starts a second worker in
    one of the first trials; the interpreter shows both threads."""
    result = probe_start_race(S1Store)
    assert result.verdict == "fail" and "2 cleanup worker threads" in result.message
    assert result.trials <= 20 and result.exercised >= 1


def test_fixed_S1_survives_the_start_race() -> None:
    result = probe_start_race(FixedS1Store)
    assert result.verdict == "pass" and result.exercised > 0


def test_S1_failing_sweeps_log_without_bound() -> None:
    """An hour of sweeps failing on a NaN clock, through S1's own worker on the virtual
    clock: one line per interval (3600). The fix backs off and logs O(log n)."""
    s1_result, fixed = probe_failing_sweeps(S1Store), probe_failing_sweeps(FixedS1Store)
    assert s1_result.verdict == "fail" and "3600 log lines" in s1_result.message
    assert fixed.verdict == "pass" and fixed.log_lines is not None
    assert 0 < fixed.log_lines <= MAX_LOG_LINES_PER_HOUR


def test_S1_worker_sleeps_on_the_store_clock(clock: VirtualClock) -> None:
    """The adapter routes S1's `time.sleep` through the store's clock: its worker sweeps
    when the interval has passed on the clock, and release() ends the thread."""
    store = S1Store(Policy(ttl=1.0), clock)
    store.start("a")
    store.transition("a", Status.FAILED)
    before = set(threading.enumerate())
    store.start_cleanup_worker(10.0)
    mine = [t for t in threading.enumerate() if t not in before]
    assert len(mine) == 1 == store.cleanup_workers_alive() and clock.settle(mine)
    clock.advance(9.0)
    assert clock.settle(mine) and len(store) == 1
    clock.advance(1.0)
    assert clock.settle(mine) and len(store) == 0
    store.release()
    assert not any(t.is_alive() for t in mine)


@pytest.mark.parametrize("interval", [-1.0, math.nan, math.inf])
def test_S1_worker_with_an_interval_time_sleep_refuses_ends(clock: VirtualClock,
                                                             interval: float) -> None:
    """S1 does not check its interval; `time.sleep` does, and ends the worker with an
    error. So does the replica: its worker must not spin on the virtual clock (a thread
    that is always due would leave the stateful check unable to settle: unknown, where
    the call itself already broke the spec)."""
    store = S1Store(Policy(ttl=1.0), clock)
    assert store.start_cleanup_worker(interval) is True  # accepted: the defect (W1)
    worker = store.mapping.worker_thread()
    assert worker is not None
    worker.join(10.0)
    assert not worker.is_alive() and clock.settle([worker])
    store.release()


def test_probes_of_a_store_without_a_worker_answer_unknown() -> None:
    """S2 has no worker: nothing to fail for an hour, nothing to race (never "pass" for
    a sweep nobody ran)."""
    result = probe_failing_sweeps(S2Store)
    assert result.verdict == "unknown" and "no worker thread" in result.message
    assert probe_start_race(S2Store).verdict != "fail"
