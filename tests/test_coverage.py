"""No vacuous pass: a stateful check that never put an invariant to the test says so
(unknown), and what the model's steps did is classified exactly."""

from __future__ import annotations

import pytest
from hypothesis import settings as Settings

from runbound.model import spec
from runbound.model.check import verify
from runbound.model.check.coverage import EVENTS, Coverage
from runbound.model.check.minimize import run_program
from runbound.model.check.profiles import machine_settings
from runbound.model.check.stateful import probe_programs
from runbound.model.invariants import INVARIANTS
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.reference.memory import MemoryRunStore


def steps(policy: Policy, calls: list[tuple[str, tuple[object, ...], float]]) -> Coverage:
    cov, state = Coverage(), spec.initial(policy)
    for op, args, now in calls:
        after, result = spec.apply(state, op, args, now)
        cov.step(op, args, state, after, result)
        state = after
    return cov


def test_an_eviction_beside_an_active_run_is_seen() -> None:
    cov = steps(Policy(max_terminal=1), [
        ("start", ("a",), 1.0), ("transition", ("a", Status.CANCELLED), 2.0),
        ("start", ("b",), 3.0), ("transition", ("b", Status.CANCELLED), 4.0),
        ("start", ("c",), 5.0)])
    assert cov.events["cap-eviction"] == 1
    assert cov.events["eviction-beside-active"] == 0  # nothing was active then
    cov = steps(Policy(max_terminal=1), [
        ("start", ("a",), 1.0), ("transition", ("a", Status.CANCELLED), 2.0),
        ("start", ("c",), 2.5),
        ("start", ("b",), 3.0), ("transition", ("b", Status.CANCELLED), 4.0)])
    assert cov.events["eviction-beside-active"] == 1
    assert ("pending", "cancelled") in cov.edges


def test_expiry_reap_dropped_events_and_a_replaced_run() -> None:
    cov = steps(Policy(ttl=10.0, stale_after=5.0, max_events_per_run=1), [
        ("start", ("a",), 1.0), ("append_event", ("a", "x"), 1.0),
        ("append_event", ("a", "y"), 1.0),           # the buffer is full: one dropped
        ("transition", ("a", Status.COMPLETED), 2.0),
        ("start", ("a",), 3.0),                      # replaces the old run: no event
        ("start", ("b",), 3.0), ("prune", (), 100.0)])  # a, b stale: reaped; ...
    assert cov.events["events-dropped"] == 1
    assert cov.events["lease-reap"] == 2
    assert cov.events["ttl-expiry"] == 0 and cov.events["cap-eviction"] == 0
    cov2 = steps(Policy(ttl=10.0), [("start", ("a",), 1.0),
                                    ("transition", ("a", Status.FAILED), 2.0),
                                    ("get", ("a",), 50.0), ("prune", (), 51.0)])
    assert cov2.outcomes[("get", "UnknownRun")] == 1  # hidden past its TTL (V2)
    assert cov2.events["ttl-expiry"] == 1 and cov2.events["cap-eviction"] == 0


def test_a_check_that_never_reaches_its_event_is_unknown_not_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the built-in programs, one short example cannot evict beside an active
    run: I4 would pass on nothing."""
    monkeypatch.setattr(verify, "probe_programs", lambda capabilities=None: [])
    tiny: Settings = machine_settings(max_examples=1, stateful_step_count=2,
                                      derandomize=True, database=None)
    check = verify.check_invariant(MemoryRunStore, "I4", tiny)
    assert check.verdict == "unknown", check
    assert "vacuous" in check.note and "eviction-beside-active" in check.note
    assert check.coverage is not None and "eviction-beside-active" in check.coverage["never"]


WITNESSES = {e for p in INVARIANTS.values() for e in p.witnesses}


def test_every_witness_of_the_registry_is_an_event_the_coverage_counts() -> None:
    """A misspelt witness would never be seen, and every pass of its property would be
    reported vacuous."""
    assert set(EVENTS) >= WITNESSES


def test_the_built_in_programs_reach_every_needed_event() -> None:
    """So a short search (a store author's `--examples 20`) is never vacuous by chance."""
    cov = Coverage()
    for program in probe_programs():
        assert run_program(MemoryRunStore, program, set(), None, cov) is None
    assert {e for e, n in cov.events.items() if n} >= WITNESSES
