"""The model's operations, one scenario each: what the spec says must happen."""

from __future__ import annotations

import math

import pytest

from runbound.model import spec
from runbound.model.errors import (
    AdmissionRefused,
    IllegalTransition,
    InvalidArgument,
    NotActive,
    PolicyError,
    RunAlreadyActive,
    StoreClosed,
    UnknownRun,
)
from runbound.model.invariants import check_valid
from runbound.model.lifecycle import TERMINAL, TRANSITIONS, Status
from runbound.model.policy import Policy, SweepMode


def started(policy: Policy, *ids: str, now: float = 0.0) -> spec.ModelState:
    state = spec.initial(policy)
    for rid in ids:
        state, _ = spec.start(state, rid, now)
    return state


def test_transition_table_terminal_is_absorbing() -> None:
    """No transition leaves a terminal status, and every active status can fail."""
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
    for status in (Status.PENDING, Status.RUNNING):
        assert Status.FAILED in TRANSITIONS[status]


def test_start_then_complete_stamps_terminated_at_once() -> None:
    """terminated_at is stamped at the first terminal transition and kept after."""
    s = started(Policy(), "a", now=1.0)
    s, run = spec.transition(s, "a", Status.RUNNING, 2.0)
    assert run.terminated_at is None and run.updated_at == 2.0
    s, run = spec.transition(s, "a", "completed", 3.0)
    assert run.terminated_at == 3.0 and run.status is Status.COMPLETED
    with pytest.raises(IllegalTransition) as err:
        spec.transition(s, "a", Status.FAILED, 4.0)
    assert err.value.run_id == "a" and err.value.state is Status.COMPLETED
    assert "T1" in str(err.value) and "'a'" in str(err.value)
    check_valid(s)


def test_start_of_active_id_is_refused_and_of_terminal_id_replaces() -> None:
    s = started(Policy(), "a")
    with pytest.raises(RunAlreadyActive):
        spec.start(s, "a", 1.0)
    s, _ = spec.transition(s, "a", Status.CANCELLED, 1.0)
    s, run = spec.start(s, "a", 2.0)
    assert run.status is Status.PENDING and run.created_at == 2.0 and spec.size(s) == 1


def test_ttl_hides_before_sweep_and_sweep_removes() -> None:
    """A terminal run past its TTL is invisible at once, and gone after a sweep."""
    s = started(Policy(ttl=10.0, sweep=SweepMode.BACKGROUND), "a")
    s, _ = spec.transition(s, "a", Status.FAILED, 0.0)
    assert spec.get(s, "a", 9.9).status is Status.FAILED
    with pytest.raises(UnknownRun):
        spec.get(s, "a", 10.0)
    assert spec.list_runs(s, 5, now=10.0).runs == ()
    assert spec.size(s) == 1  # retained until a sweep
    s, result = spec.sweep(s, 10.0)
    assert result.expired == ("a",) and spec.size(s) == 0


def test_cap_evicts_oldest_terminated_never_active() -> None:
    s = started(Policy(max_terminal=1), "a", "b", "c")
    s, _ = spec.transition(s, "b", Status.CANCELLED, 1.0)
    s, _ = spec.transition(s, "c", Status.FAILED, 2.0)
    assert [r.run_id for r in s.runs] == ["a", "c"]
    check_valid(s)


def test_admission_refuses_beyond_max_active() -> None:
    s = started(Policy(max_active=2), "a", "b")
    with pytest.raises(AdmissionRefused) as err:
        spec.start(s, "c", 1.0)
    assert "A2" in err.value.rule and err.value.run_id == "c"
    s, _ = spec.transition(s, "a", Status.FAILED, 1.0)
    s, _ = spec.start(s, "c", 1.0)
    assert spec.size(s) == 3


def test_lease_reaps_stale_runs_to_failed_never_deletes() -> None:
    s = started(Policy(stale_after=5.0, sweep=SweepMode.BACKGROUND), "a", "b")
    s, _ = spec.heartbeat(s, "b", 3.0)
    s, result = spec.sweep(s, 5.0)
    assert result.reaped == ("a",) and result.removed == 0
    assert spec.get(s, "a", 5.0).status is Status.FAILED
    assert spec.get(s, "a", 5.0).terminated_at == 5.0
    assert spec.get(s, "b", 5.0).status is Status.PENDING


def test_lazy_sweep_reaping_frees_admission() -> None:
    """In lazy mode a start first reaps stale runs, so a stale run holds no slot."""
    s = started(Policy(max_active=1, stale_after=5.0), "a")
    s, run = spec.start(s, "b", 5.0)
    assert run.status is Status.PENDING
    assert spec.get(s, "a", 5.0).status is Status.FAILED


def test_refused_call_rolls_back_its_lazy_sweep() -> None:
    """A refused call changes nothing, not even the sweep it began with (I10)."""
    s = started(Policy(max_active=2, stale_after=5.0), "a", "b")
    s, _ = spec.heartbeat(s, "b", 4.0)
    with pytest.raises(RunAlreadyActive):
        spec.start(s, "b", 6.0)  # would have reaped "a" first
    assert spec.get(s, "a", 6.0).status is Status.PENDING


def test_ring_buffer_keeps_newest_and_counts_dropped() -> None:
    s = started(Policy(max_events_per_run=2), "a")
    seqs = []
    for payload in ("e1", "e2", "e3"):
        s, n = spec.append_event(s, "a", payload, 1.0)
        seqs.append(n)
    run = spec.get(s, "a", 1.0)
    assert seqs == [1, 2, 3] and run.events == ("e2", "e3") and run.dropped_events == 1


def test_list_runs_newest_first_with_stable_cursor() -> None:
    """Pages neither repeat nor skip, even when runs start between pages."""
    s = started(Policy(), "a", "b", "c", "d")
    page = spec.list_runs(s, 2)
    assert [r.run_id for r in page.runs] == ["d", "c"] and page.next_cursor is not None
    s, _ = spec.start(s, "e", 1.0)
    rest = spec.list_runs(s, 5, cursor=page.next_cursor)
    assert [r.run_id for r in rest.runs] == ["b", "a"] and rest.next_cursor is None
    done = spec.list_runs(s, 5, status=Status.PENDING)
    assert len(done.runs) == 5


@pytest.mark.parametrize("bad", ["", "x" * 129, 5, None, b"a"])
def test_bad_run_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidArgument) as err:
        spec.start(spec.initial(Policy()), bad, 0.0)
    assert "R1" in err.value.rule


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "3"])
def test_bad_limits_are_refused(limit: object) -> None:
    with pytest.raises(InvalidArgument):
        spec.list_runs(spec.initial(Policy()), limit)


def test_heartbeat_and_append_need_an_active_run() -> None:
    s = started(Policy(), "a")
    s, _ = spec.transition(s, "a", Status.CANCELLED, 1.0)
    with pytest.raises(NotActive):
        spec.heartbeat(s, "a", 2.0)
    with pytest.raises(NotActive):
        spec.append_event(s, "a", "x", 2.0)
    with pytest.raises(InvalidArgument):
        spec.append_event(s, "a", 7, 2.0)


@pytest.mark.parametrize("field", ["ttl", "max_terminal", "max_active", "max_events_per_run",
                                   "stale_after"])
@pytest.mark.parametrize("value", [-1, math.nan, math.inf, True, "5"])
def test_policy_refuses_bad_numbers(field: str, value: object) -> None:
    with pytest.raises(PolicyError) as err:
        Policy(**{field: value})  # type: ignore[arg-type]
    assert err.value.run_id == field and "P1" in err.value.rule


def test_policy_refuses_integral_field_as_float() -> None:
    with pytest.raises(PolicyError):
        Policy(max_terminal=2.5)  # type: ignore[arg-type]
    with pytest.raises(PolicyError):
        Policy(sweep="sometimes")  # type: ignore[arg-type]


def test_time_never_goes_back() -> None:
    """A clock that steps back cannot decrease updated_at or revive an expired run."""
    s = started(Policy(ttl=5.0), "a", now=10.0)
    s, _ = spec.transition(s, "a", Status.CANCELLED, 10.0)
    s, run = spec.start(s, "b", 3.0)
    assert run.created_at == 10.0
    s, _ = spec.sweep(s, 20.0)
    with pytest.raises(UnknownRun):
        spec.get(s, "a", 0.0)


def test_worker_at_most_one_and_close() -> None:
    s = spec.initial(Policy())
    s, first = spec.start_worker(s, 1.0)
    s, second = spec.start_worker(s, 1.0)
    assert (first, second, s.worker) == (True, False, True)
    s = spec.close(spec.close(s))
    assert not s.worker
    with pytest.raises(StoreClosed):
        spec.start(s, "a", 0.0)
    with pytest.raises(InvalidArgument):
        spec.start_worker(spec.initial(Policy()), 0)


def test_a_policy_that_keeps_reaped_runs_forever_says_so() -> None:
    """max_active and a lease bound the active runs; with neither a TTL nor a terminal
    cap every reaped run is kept: the policy warns when it is built."""
    import warnings

    from runbound.model.policy import UnboundedRetention

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Policy(max_active=2, stale_after=30.0)
        Policy(max_active=2, stale_after=30.0, ttl=60.0)
    assert [type(w.message) for w in caught] == [UnboundedRetention]
