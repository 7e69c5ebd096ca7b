"""The fast linearizability search against its oracle, and the parallel check of parts.

The differential test draws small histories that are linearizable by construction (each
call takes effect at a point inside its interval) and then, often, breaks one answer; the
fast search (`linsearch.search`: linked list, memoised step, states without their next
start number) and the plain one (`linearizability.plain_search`) must agree on every
history, with and without calls still pending."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbound.model import spec
from runbound.model.calls import same_result
from runbound.model.check import linsearch
from runbound.model.check.linearizability import Call, check_history, plain_search
from runbound.model.check.linsearch import answer, plain, search, search_parts, seq_blind
from runbound.model.check.profiles import profile_name
from runbound.model.errors import NotActive, RunboundError, UnknownRun
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.records import Page, Run

NOW = 1000.0
POLICIES = (Policy(), Policy(max_active=1), Policy(max_terminal=1),
            Policy(max_terminal=1, max_active=2, max_events_per_run=1))
EXAMPLES = {"default": 600, "thorough": 6000, "crosshair": 100}[profile_name()]


def _call(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    rid = draw(st.sampled_from("ab"))
    op = draw(st.sampled_from(("start", "start", "transition", "heartbeat",
                               "append_event", "get", "list_runs")))
    if op == "transition":
        return op, (rid, draw(st.sampled_from(list(Status))))
    if op == "append_event":
        return op, (rid, "e")
    if op == "list_runs":  # a cursor is the one way a start number shows
        return op, (draw(st.integers(1, 2)), None,
                    draw(st.sampled_from((None, "1", "2", "3"))))
    return op, (rid,)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Policy, list[Call], frozenset[int]]:
    """Threads of sequential calls; each takes effect at a drawn point of its interval,
    in that order, through the model: its answer is the model's. Then, most often, one
    answer is replaced by a plausible wrong one (another call's, or a refusal)."""
    policy = draw(st.sampled_from(POLICIES))
    shapes: list[tuple[int, str, tuple[Any, ...], int, int, int]] = []
    for thread in range(draw(st.integers(1, 4))):
        t = draw(st.integers(0, 6))
        for _ in range(draw(st.integers(1, 4))):
            op, args = _call(draw)
            end = t + draw(st.integers(0, 8))
            shapes.append((thread, op, args, t, end, draw(st.integers(t, end))))
            t = end + draw(st.integers(1, 3))
    state = spec.initial(policy)
    results: dict[int, object] = {}
    for k in sorted(range(len(shapes)), key=lambda k: (shapes[k][5], k)):
        state, results[k] = spec.apply(state, shapes[k][1], shapes[k][2], NOW)
    calls = [Call(th, op, args, inv, ret, results[k])
             for k, (th, op, args, inv, ret, _) in enumerate(shapes)]
    if draw(st.integers(0, 3)) > 0:
        k = draw(st.integers(0, len(calls) - 1))
        wrong = draw(st.sampled_from(
            [c.result for c in calls] + [UnknownRun("a", "absent", "V1"),
                                         Run("a", Status.PENDING, NOW, NOW)]))
        calls[k] = Call(calls[k].thread, calls[k].op, calls[k].args, calls[k].invoked,
                        calls[k].returned, wrong)
    # a thread's last call may still be running: any answer fits it
    last = {c.thread: i for i, c in enumerate(calls)}
    pending = frozenset(i for i in last.values() if draw(st.integers(0, 4)) == 0)
    return policy, calls, pending


def _agree(history: tuple[Policy, list[Call], frozenset[int]]) -> None:
    policy, calls, pending = history
    fast, _, _ = search(policy, plain(calls), NOW, 10**6, pending)
    slow, _, _ = plain_search(policy, calls, NOW, 10**6, pending)
    assert fast is not None and fast == slow, (fast, slow)


@settings(max_examples=EXAMPLES)
@given(histories())
def test_fast_search_agrees_with_the_plain_one(
        history: tuple[Policy, list[Call], frozenset[int]]) -> None:
    _agree(history)


def test_the_differential_test_catches_a_planted_defect(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast search that compares refusals without their class (any refusal fits any
    other) accepts histories the oracle rejects: the differential test finds one."""
    def coarse(result: object) -> Hashable:
        return ("error",) if isinstance(result, RunboundError) else answer(result)

    monkeypatch.setattr(linsearch, "answer", coarse)
    planted = settings(max_examples=EXAMPLES, database=None)(given(histories())(_agree))
    with pytest.raises(AssertionError):
        planted()


def test_the_differential_draws_both_verdicts_and_seq_sensitive_histories() -> None:
    """The generator is not one-sided: it draws orderable and unorderable histories, and
    histories whose cursors read start numbers (where states keep their next one)."""
    seen: set[tuple[bool | None, bool]] = set()

    @settings(max_examples=200, database=None)
    @given(histories())
    def collect(history: tuple[Policy, list[Call], frozenset[int]]) -> None:
        policy, calls, pending = history
        seen.add((search(policy, plain(calls), NOW, 10**6, pending)[0],
                  seq_blind(plain(calls))))

    collect()
    assert {(True, True), (False, True), (True, False), (False, False)} <= seen


def test_answer_is_what_same_result_compares() -> None:
    """Two answers are equal iff `same_result` says the results match, for what the
    model answers (left) against what a store may answer (right)."""
    run = Run("a", Status.PENDING, NOW, NOW, seq=1)
    model = [run, Run("a", Status.RUNNING, NOW, NOW), UnknownRun("a", "absent", "V1"),
             NotActive("a", "succeeded", "T2"), Page((run,), "1"), Page((run,), None),
             Page((), None), 1, 0, None, True]
    store = [*model, Run("a", Status.PENDING, NOW, NOW, seq=9), UnknownRun("b", "x", "V2"),
             Page((run,), "7"), KeyError("a"), RuntimeError("x"), 1.0, False, (run,)]
    for expected in model:
        for actual in store:
            same = answer(expected) == answer(actual)
            assert same == same_result(expected, actual), (expected, actual)


# --- parts in parallel ----------------------------------------------------------------

def _starts(rid: str, n: int, *, twice: bool = False) -> list[Call]:
    """`n` sequential start/finish pairs of `rid` on thread 0 (orderable); with `twice`,
    then two overlapping successful starts of it (not orderable)."""
    calls: list[Call] = []
    t = 0
    for _ in range(n):
        calls.append(Call(0, "start", (rid,), t, t + 1, Run(rid, Status.PENDING, NOW, NOW)))
        done = Run(rid, Status.CANCELLED, NOW, NOW, NOW)
        calls.append(Call(0, "transition", (rid, Status.CANCELLED), t + 2, t + 3, done))
        t += 4
    if twice:
        pending = Run(rid, Status.PENDING, NOW, NOW)
        calls += [Call(1, "start", (rid,), t, t + 5, pending),
                  Call(2, "start", (rid,), t + 1, t + 4, pending)]
    return calls


def test_parts_in_workers_give_the_sequential_outcome() -> None:
    """Forced into two worker processes (every part big), the outcomes are the sequential
    walk's, whatever finishes first: a passing part, then the failing one decides; the
    part after it is never reported."""
    parts = [plain(_starts("a", 300)), plain(_starts("b", 5, twice=True)),
             plain(_starts("c", 300))]
    budgets = [10**6] * 3
    alone = search_parts(Policy(), parts, NOW, budgets, workers=1)
    pooled = search_parts(Policy(), parts, NOW, budgets, workers=2, big_part=0)
    assert [o[0] for o in alone.outcomes] == [True, False]
    assert pooled.outcomes == alone.outcomes
    assert pooled.in_workers == 3 and alone.in_workers == 0


def test_a_failing_part_cancels_the_later_ones_in_workers() -> None:
    """The part after a failing one would search for minutes (every order of ten
    overlapping starts, about 10 million nodes: the runs are kept in start order, so
    each order is its own state, before one impossible read): it is cancelled, and the
    verdict is the failure."""
    hard = [Call(t, "start", (f"r{t}",), 0, 100, Run(f"r{t}", Status.PENDING, NOW, NOW))
            for t in range(10)]
    hard.append(Call(10, "get", ("zz",), 0, 100, Run("a", Status.PENDING, NOW, NOW)))
    parts = [plain(_starts("a", 5, twice=True)), plain(hard)]
    found = search_parts(Policy(max_active=100), parts, NOW, [10**6, 10**9], workers=2,
                         big_part=0)
    assert [o[0] for o in found.outcomes] == [False]
    assert found.cancelled == 1


def test_an_earlier_failing_part_decides_even_when_a_later_one_fails_first() -> None:
    """Part 0 fails after trying every order of seven overlapping starts; part 1 fails
    at once, and finishes first: the verdict is still part 0's, as in one process."""
    hard = [Call(t, "start", (f"r{t}",), 0, 100, Run(f"r{t}", Status.PENDING, NOW, NOW))
            for t in range(7)]
    hard.append(Call(7, "get", ("zz",), 0, 100, Run("a", Status.PENDING, NOW, NOW)))
    parts = [plain(hard), plain(_starts("a", 5, twice=True))]
    policy = Policy(max_active=100)
    alone = search_parts(policy, parts, NOW, [10**6, 10**6], workers=1)
    pooled = search_parts(policy, parts, NOW, [10**6, 10**6], workers=2, big_part=0)
    assert [o[0] for o in alone.outcomes] == [False]
    assert pooled.outcomes == alone.outcomes and pooled.cancelled == 0


def test_over_budget_in_a_worker_is_unknown_not_pass() -> None:
    calls = [Call(t, "start", (f"r{t}",), 0, 100, Run(f"r{t}", Status.PENDING, NOW, NOW))
             for t in range(7)]
    calls.append(Call(7, "get", ("zz",), 0, 100, Run("a", Status.PENDING, NOW, NOW)))
    parts = [plain(_starts("a", 50)), plain(calls)]
    found = search_parts(Policy(max_active=100), parts, NOW, [10**6, 50], workers=2,
                         big_part=0)
    assert [o[0] for o in found.outcomes] == [True, None]


def test_check_history_is_the_same_split_or_whole() -> None:
    """Per run id (three parts) and as one history (a cap couples them, but one too
    high to matter), the verdict on a long orderable history is pass, and a planted
    double start fails both ways."""
    calls = _starts("a", 40) + _starts("b", 40) + _starts("c", 40)
    calls = [Call(c.thread + 3 * k, c.op, c.args, c.invoked, c.returned, c.result)
             for k, part in enumerate((calls[:80], calls[80:160], calls[160:]))
             for c in part]
    assert check_history(Policy(), calls, NOW).verdict == "pass"
    assert check_history(Policy(max_terminal=10**6), calls, NOW).verdict == "pass"
    broken = calls + _starts("d", 0, twice=True)
    assert check_history(Policy(), broken, NOW, shrinking=False).verdict == "fail"
    assert check_history(Policy(max_terminal=10**6), broken, NOW,
                         shrinking=False).verdict == "fail"
