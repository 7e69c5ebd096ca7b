"""The linearizability check: hand-made histories it must accept and reject, the thread-
safe stores pass the stress check, and a racy store is caught."""

from __future__ import annotations

from model.errors import RunAlreadyActive
from model.lifecycle import Status
from model.linearizability import Call, check_history, stress
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
    assert check_history(Policy(), calls, 1000.0, budget=50).verdict == "unknown"
    assert check_history(Policy(), calls, 1000.0).verdict == "fail"


def test_thread_safe_stores_are_linearizable() -> None:
    for factory in (MemoryRunStore, on_disk, on_local_server):
        verdict, history = stress(factory, histories=5)
        assert verdict.verdict == "pass", (factory, verdict, history[:5])


def test_racy_store_is_not_linearizable() -> None:
    """The racy store is right when called one at a time; only concurrency shows it."""
    verdict, history = stress(RacyStore)
    assert verdict.verdict == "fail" and verdict.unordered and history
