"""The linearizability check: hand-made histories it must accept and reject, the shrinker
reports a 1-minimal conflict, the thread-safe stores pass the stress check, a racy store
is caught as a race and a sequentially wrong one as sequential."""

from __future__ import annotations

from runbound.model.check.linearizability import (
    Call,
    check_history,
    culprit,
    overlapping,
    partition,
    shrink,
    stress,
)
from runbound.model.errors import RunAlreadyActive, UnknownRun
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.records import Run
from runbound.reference.broken import EvictsActiveStore, RacyStore
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis_server import on_local_server
from runbound.reference.sqlite import on_disk

A = Run("a", Status.PENDING, 1000.0, 1000.0, seq=1)
B = Run("b", Status.PENDING, 1000.0, 1000.0, seq=2)
COUPLED = Policy(max_active=10)  # a cap: one history, not one per run id


def test_overlapping_calls_may_be_ordered_either_way() -> None:
    """Two overlapping starts of one id: one wins, one is refused; either order fits."""
    calls = [Call(0, "start", ("a",), 0, 10, RunAlreadyActive("a", "pending", "A1")),
             Call(1, "start", ("a",), 1, 9, A)]
    assert check_history(Policy(), calls, 1000.0).verdict == "pass"


def test_real_time_order_is_respected() -> None:
    """A refusal that returned before the winning start was even invoked cannot be
    explained: nothing was active yet."""
    calls = [Call(0, "start", ("a",), 0, 1, RunAlreadyActive("a", "pending", "A1")),
             Call(1, "start", ("a",), 2, 3, A)]
    verdict = check_history(Policy(), calls, 1000.0)
    assert verdict.verdict == "fail" and verdict.unordered
    assert verdict.culprit is calls[0] and verdict.minimal == [calls[0]]


def test_two_successful_starts_of_one_id_are_not_linearizable() -> None:
    calls = [Call(0, "start", ("a",), 0, 10, A), Call(1, "start", ("a",), 1, 9, A)]
    verdict = check_history(Policy(), calls, 1000.0)
    assert verdict.verdict == "fail"
    # the failure is definite only once both have returned: the later return is blamed
    assert verdict.culprit is calls[0] and verdict.minimal == [calls[0], calls[1]]
    assert "start('a') -> Run('a', 'pending')" in verdict.note


def test_search_over_budget_is_unknown_not_pass() -> None:
    """7 overlapping starts fit in any order, but one read fits none: the search must
    try them all, and with a small budget it answers unknown."""
    calls = [Call(t, "start", (f"r{t}",), 0, 100, Run(f"r{t}", Status.PENDING, 1000.0,
                                                        1000.0)) for t in range(7)]
    calls.append(Call(7, "get", ("zz",), 0, 100, A))
    assert check_history(COUPLED, calls, 1000.0, budget=50).verdict == "unknown"
    assert check_history(COUPLED, calls, 1000.0, shrinking=False).verdict == "fail"


def test_history_splits_per_run_only_when_nothing_couples_runs() -> None:
    calls = [Call(t, "start", (rid,), 0, 10, Run(rid, Status.PENDING, 1000.0, 1000.0))
             for t, rid in enumerate("abab")]
    assert len(partition(Policy(), calls)) == 2
    assert len(partition(Policy(max_terminal=3), calls)) == 1
    assert len(partition(Policy(), [*calls, Call(9, "list_runs", (5,), 0, 10, None)])) == 1
    # two successful starts of "a" overlap: the part of "a" fails, and says so
    verdict = check_history(Policy(), calls, 1000.0)
    assert verdict.verdict == "fail" and "run 'a'" in verdict.note


# --- the shrinker ------------------------------------------------------------------------

#: one history of four threads (times in ns): a `get` that saw a run an overlapping,
#: later-invoked `start` created (orderable, but a prefix by invocation that cuts the
#: start off would blame the get), a heartbeat, then two overlapping starts of "a" that
#: both succeed (the defect), and a read still running when the second start returned.
TRAP = [
    Call(0, "get", ("b",), 0, 30, B),
    Call(1, "start", ("b",), 5, 20, B),
    Call(0, "heartbeat", ("b",), 35, 50, B),
    Call(2, "start", ("a",), 40, 60, A),
    Call(3, "start", ("a",), 45, 70, A),
    Call(2, "get", ("c",), 65, 90, UnknownRun("c", "absent", "V1")),
    Call(1, "list_runs", (5,), 75, 80, None),
]


def test_culprit_is_the_return_that_makes_the_history_fail() -> None:
    """Not the get whose run came from a later-invoked start: the later of the two
    successful starts of "a", whose return is the first event no order explains."""
    assert culprit(COUPLED, TRAP, 1000.0) is TRAP[4]
    assert culprit(COUPLED, TRAP[:3], 1000.0) is None  # the trap alone is orderable
    assert check_history(COUPLED, TRAP[:3], 1000.0).verdict == "pass"


def test_shrink_is_one_minimal() -> None:
    """The reported sub-history still fails at the same call, and dropping any one of
    its calls makes it orderable or moves the failure to another call."""
    found = shrink(COUPLED, TRAP, 1000.0)
    assert found is not None
    sub, blamed = found
    assert sub == [TRAP[3], TRAP[4]] and blamed is TRAP[4]
    assert culprit(COUPLED, sub, 1000.0) is blamed
    for call in sub:
        rest = [c for c in sub if c is not call]
        assert culprit(COUPLED, rest, 1000.0) is not blamed


def test_shrink_keeps_a_call_that_an_order_needs() -> None:
    """A third start of "a" is needed to fail when a cancel can explain the second one:
    the minimal conflict keeps the cancel, and is still 1-minimal."""
    cancelled = Run("a", Status.CANCELLED, 1000.0, 1000.0, 1000.0)
    calls = [Call(0, "start", ("a",), 0, 100, A),
             Call(1, "start", ("a",), 1, 100, A),
             Call(2, "start", ("a",), 2, 100, A),
             Call(3, "transition", ("a", Status.CANCELLED), 3, 100, cancelled),
             Call(3, "get", ("b",), 110, 120, UnknownRun("b", "absent", "V1"))]
    found = shrink(COUPLED, calls, 1000.0)
    assert found is not None
    sub, blamed = found
    assert len(sub) == 4 and calls[3] in sub and calls[4] not in sub
    for call in sub:
        assert culprit(COUPLED, [c for c in sub if c is not call], 1000.0) is not blamed
    verdict = check_history(COUPLED, calls, 1000.0)
    assert verdict.minimal == sub and verdict.culprit is blamed
    assert sum("<- cannot be placed" in line for line in verdict.conflict) == 1


def test_overlapping_is_between_threads_only() -> None:
    one_thread = [Call(0, "get", ("a",), 0, 10, A), Call(0, "get", ("a",), 11, 20, A)]
    assert not overlapping(one_thread)
    assert not overlapping([*one_thread, Call(1, "get", ("a",), 21, 30, A)])
    assert overlapping([*one_thread, Call(1, "get", ("a",), 15, 30, A)])


# --- the stress check on stores ---------------------------------------------------------

def test_a_long_history_of_eight_threads_is_checked() -> None:
    verdict, _ = stress(MemoryRunStore, threads=8, calls_per_thread=500, histories=1)
    assert verdict.verdict == "pass" and verdict.explored >= 8 * 500


def test_thread_safe_stores_are_linearizable() -> None:
    """The racy window is exercised (calls of different threads overlap) and every
    history has an order. SQLite and Redis fsync each call: fewer histories."""
    for factory, histories in ((MemoryRunStore, 100), (on_disk, 20), (on_local_server, 20)):
        verdict, history = stress(factory, histories=histories)
        assert verdict.verdict == "pass", (factory, verdict, history[:5])
        assert verdict.histories == histories and verdict.overlapped > 0


def test_no_overlap_is_unknown_not_pass() -> None:
    """One thread cannot race: the window was never exercised."""
    verdict, _ = stress(MemoryRunStore, threads=1, histories=5)
    assert verdict.verdict == "unknown" and "never exercised" in verdict.note


def test_racy_store_is_not_linearizable() -> None:
    """The racy store is right when called one at a time; only concurrency shows it, and
    the conflict names two overlapping starts of one id that both succeeded. (Usually
    alone; with the calls of that id that make the failure definite where an
    overlapping cancel could explain a second start.)"""
    verdict, history = stress(RacyStore)
    assert verdict.verdict == "fail" and history and verdict.note.startswith("race:")
    starts = [c for c in verdict.minimal if c.op == "start" and isinstance(c.result, Run)]
    assert len({c.args[0] for c in verdict.minimal}) == 1  # one run id, nothing else
    assert any(a.thread != b.thread and a.invoked < b.returned and b.invoked < a.returned
               for a in starts for b in starts)
    assert verdict.culprit in verdict.minimal
    assert len(verdict.conflict) == len(verdict.minimal)


def test_sequential_defect_is_not_reported_as_a_race() -> None:
    """EvictsActiveStore is wrong one call at a time: the replay says so, and no race is
    blamed. Its defect needs a cap reached with an active run oldest: about one history
    in thirty (measured: 5 to 105 over 25 seeds), so up to 400 are recorded; it stops at
    the first failure."""
    verdict, history = stress(EvictsActiveStore, histories=400)
    assert verdict.verdict == "fail" and history
    assert verdict.note.startswith("sequential: ") and "model " in verdict.note
    assert not verdict.conflict  # no race blamed
    # the calls that show it, one at a time, and the one whose result is not the model's
    assert verdict.culprit is not None and verdict.culprit in verdict.minimal
