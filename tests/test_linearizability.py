"""The linearizability check: hand-made histories it must accept and reject, the thread-
safe stores pass the stress check, and a racy store is caught."""

from __future__ import annotations

from model.errors import RunAlreadyActive
from model.lifecycle import Status
from model.linearizability import Call, check_history, partition, stress
from model.policy import Policy
from model.records import Run
from reference.broken import RacyStore
from reference.memory import MemoryRunStore
from reference.redis_server import on_local_server
from reference.sqlite import on_disk

A = Run("a", Status.PENDING, 1000.0, 1000.0, seq=1)


def test_overlapping_calls_may_be_ordered_either_way() -> None:
    """Two overlapping starts of one id: one wins, one is refused; either order fits."""
    calls = [Call(0, "start", ("a",), 0, 10, RunAlreadyActive("a", "pending", "S1")),
             Call(1, "start", ("a",), 1, 9, A)]
    assert check_history(Policy(), calls, 1000.0).verdict == "pass"


def test_real_time_order_is_respected() -> None:
    """A refusal that returned before the winning start was even invoked cannot be
    explained: nothing was active yet."""
    calls = [Call(0, "start", ("a",), 0, 1, RunAlreadyActive("a", "pending", "S1")),
             Call(1, "start", ("a",), 2, 3, A)]
    verdict = check_history(Policy(), calls, 1000.0)
    assert verdict.verdict == "fail" and verdict.unordered


def test_two_successful_starts_of_one_id_are_not_linearizable() -> None:
    calls = [Call(0, "start", ("a",), 0, 10, A), Call(1, "start", ("a",), 1, 9, A)]
    assert check_history(Policy(), calls, 1000.0).verdict == "fail"


def test_search_over_budget_is_unknown_not_pass() -> None:
    """7 overlapping starts fit in any order, but one read fits none: the search must
    try them all, and with a small budget it answers unknown."""
    calls = [Call(t, "start", (f"r{t}",), 0, 100, Run(f"r{t}", Status.PENDING, 1000.0,
                                                        1000.0)) for t in range(7)]
    calls.append(Call(7, "get", ("zz",), 0, 100, A))
    coupled = Policy(max_active=10)  # a cap: one history, not one per run id
    assert check_history(coupled, calls, 1000.0, budget=50).verdict == "unknown"
    assert check_history(coupled, calls, 1000.0).verdict == "fail"


def test_history_splits_per_run_only_when_nothing_couples_runs() -> None:
    calls = [Call(t, "start", (rid,), 0, 10, Run(rid, Status.PENDING, 1000.0, 1000.0))
             for t, rid in enumerate("abab")]
    assert len(partition(Policy(), calls)) == 2
    assert len(partition(Policy(max_terminal=3), calls)) == 1
    assert len(partition(Policy(), [*calls, Call(9, "list_runs", (5,), 0, 10, None)])) == 1
    # two successful starts of "a" overlap: the part of "a" fails, and says so
    verdict = check_history(Policy(), calls, 1000.0)
    assert verdict.verdict == "fail" and "run 'a'" in verdict.note


def test_a_long_history_of_eight_threads_is_checked() -> None:
    verdict, _ = stress(MemoryRunStore, threads=8, calls_per_thread=500, histories=1)
    assert verdict.verdict == "pass" and verdict.explored >= 8 * 500


def test_thread_safe_stores_are_linearizable() -> None:
    for factory in (MemoryRunStore, on_disk, on_local_server):
        verdict, history = stress(factory, histories=5)
        assert verdict.verdict == "pass", (factory, verdict, history[:5])


def test_racy_store_is_not_linearizable() -> None:
    """The racy store is right when called one at a time; only concurrency shows it."""
    verdict, history = stress(RacyStore)
    assert verdict.verdict == "fail" and verdict.unordered and history
