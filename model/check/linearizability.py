"""Concurrent histories and the linearizability check against the model (I19).

A `Recorder` wraps a store and records each call of each thread: the operation, its
arguments, when it was invoked and when it returned (`time.perf_counter_ns`, one clock for
all threads), and its result or error. `check_history` then searches for an order of the
calls that (a) respects real time: a call that returned before another was invoked comes
first, and (b) replayed through the model (`spec.apply`), gives every call the result the
store gave (Wing & Gong's search with Lowe's memoization on (calls linearized, model
state)), per run id where the policy and the calls allow it (`partition`). The search
that runs is `linsearch.search` (Porcupine's, with a memoised model step; independent
parts in worker processes when they are big); `plain_search` is its oracle.

Time inside the model is frozen: the stress check gives the store a clock that does not
move, so TTL and leases cannot make an order valid or invalid.

What a verdict means:
- "pass": every history had an order. `stress` says "pass" only if the racy window was
  exercised: in some history two calls of different threads overlapped in time;
  otherwise "unknown". A search over its budget is "unknown" too, never "pass".
- "fail", sequential: replayed one call at a time on a fresh store, in invocation order
  or in return order (about the order a store that locks each whole call ran them in),
  a failing history already disagrees with the model. That is a plain defect, not a
  race, and the note says so ("sequential: <call>: model X, store Y").
- "fail", a race: the history is shrunk to a 1-minimal sub-history that still cannot be
  ordered (`shrink`), reported in `conflict`. Its culprit is the call whose *return*
  first makes the history unorderable: the shortest failing prefix of the history's
  events. (A prefix by invocation alone would blame artifacts: a `get` that saw a run an
  overlapping, later-invoked `start` created cannot be explained once that start is cut
  off. In an event prefix, a call invoked but not yet returned is pending: it may take
  effect with any result, or not at all, so no prefix of an orderable history fails.)
  Calls are then dropped one at a time while the sub-history still fails at the same
  culprit, to a fixpoint: dropping any call that is left makes the rest orderable or
  moves the failure to another call.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, Literal

from runbound.model import spec
from runbound.model.calls import same_result
from runbound.model.check import linsearch
from runbound.model.check.probes import run_burst
from runbound.model.clock import VirtualClock
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.protocol import StoreFactory, dispose
from runbound.model.records import Page, Run


@dataclass(frozen=True)
class Call:
    thread: int
    op: str
    args: tuple[Any, ...]
    invoked: int
    returned: int
    result: Any

    def __str__(self) -> str:
        return f"{self.brief()} [{self.invoked}..{self.returned}]"

    def brief(self) -> str:
        """The call and its result, without the times."""
        return f"thread {self.thread}: {_call_text(self.op, self.args)} -> {_show(self.result)}"


class Recorder:
    """Records every call made through it, from any thread."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[Call] = []
        self._lock = threading.Lock()  # guards calls

    def call(self, thread: int, op: str, *args: Any) -> None:
        invoked = time.perf_counter_ns()
        try:
            result: Any = getattr(self.store, op)(*args)
        except Exception as error:
            result = error
        returned = time.perf_counter_ns()
        with self._lock:
            self.calls.append(Call(thread, op, args, invoked, returned, result))


@dataclass
class Verdict:
    verdict: Literal["pass", "fail", "unknown"]
    explored: int = 0
    #: on a failure: the calls that cannot be placed after the longest orderable prefix
    #: (a race), or the call the model disagrees with (sequential)
    unordered: list[str] = field(default_factory=list)
    note: str = ""
    #: on a race: the 1-minimal sub-history that cannot be ordered, by invocation, as
    #: text and as the calls themselves, and the call that cannot be placed
    conflict: list[str] = field(default_factory=list)
    minimal: list[Call] = field(default_factory=list)
    culprit: Call | None = None
    #: a defect without a race: `minimal` is the calls that show it, replayed one at a
    #: time; `culprit` the call whose result (as replayed) is not `expected`, the model's
    expected: object = None
    #: `stress` only: histories checked, and how many had calls of different threads
    #: overlapping in time (the racy window exercised)
    histories: int = 0
    overlapped: int = 0
    #: CPU seconds spent in worker processes (parts checked in parallel), which this
    #: process's own CPU time does not count
    worker_cpu: float = 0.0


#: calls that read or change one run only: with no cap coupling the runs, a history of
#: these splits into one independent history per run id (P-compositionality)
PER_RUN = frozenset({"start", "transition", "heartbeat", "append_event", "get"})


def partition(policy: Policy, calls: list[Call]) -> list[list[Call]]:
    """Split a history per run id where that is sound: no cap in the policy (a cap makes
    one run's start or end change another's fate) and only single-run calls (a listing or
    a sweep sees every run). Otherwise the whole history is one part. Time is frozen, so
    TTL and leases see the same `now` in every order and do not couple runs."""
    coupled = policy.max_active is not None or policy.max_terminal is not None
    if coupled or any(c.op not in PER_RUN or not c.args or not isinstance(c.args[0], str)
                      for c in calls):
        return [calls]
    parts: dict[str, list[Call]] = {}
    for c in calls:
        parts.setdefault(c.args[0], []).append(c)
    return [parts[k] for k in sorted(parts)]


def _budget(budget: int | None, calls: Sized) -> int:
    return budget or max(200_000, 20 * len(calls))


def check_history(policy: Policy, calls: list[Call], now: float, *,
                  budget: int | None = None, shrinking: bool = True) -> Verdict:
    """Is there an order of `calls`, respecting real time, that the model agrees with?
    Checked per run id where `partition` allows; the first part that fails decides, and
    (with `shrinking`) is shrunk to its conflict."""
    parts = partition(policy, calls)
    budgets = [_budget(budget, part) for part in parts]
    searched = linsearch.search_parts(policy, [linsearch.plain(p) for p in parts], now,
                                      budgets)
    explored = 0
    for part, limit, (found, spent, left_at) in zip(parts, budgets, searched.outcomes,
                                                   strict=False):
        explored += spent
        left = sorted((part[i] for i in left_at), key=lambda c: c.invoked)
        where = f" (in the history of run {part[0].args[0]!r})" if len(parts) > 1 else ""
        if found is None:
            return Verdict("unknown", explored, note=f"search budget of {limit} spent{where}",
                           worker_cpu=searched.worker_cpu)
        if found:
            continue
        verdict = Verdict("fail", explored, [str(c) for c in left[:8]],
                          f"no order of {len(part)} calls fits the model{where}",
                          worker_cpu=searched.worker_cpu)
        if shrinking:
            minimal = shrink(policy, part, now, budget=budget)
            if minimal is not None:
                sub, blamed = minimal
                verdict.minimal, verdict.culprit = sub, blamed
                verdict.conflict = [_mark(c, blamed) for c in sub]
                verdict.note = (f"race: no order of these {len(sub)} calls fits the model"
                                f"{where}: {'; '.join(c.brief() for c in sub)}; the call "
                                f"that cannot be placed: {blamed.brief()}")
        return verdict
    return Verdict("pass", explored, note=f"{len(parts)} independent part(s)",
                   worker_cpu=searched.worker_cpu)


def _mark(call: Call, culprit: Call) -> str:
    if call is culprit:
        return f"{call}  <- cannot be placed"
    if _key(call) > _key(culprit):
        return f"{call}  (still running when the culprit returned: any result fits)"
    return str(call)


# --- the search --------------------------------------------------------------------------

def _invoked(call: Call) -> tuple[int, int]:
    return (call.invoked, call.thread)


def _key(call: Call) -> tuple[int, int, int]:
    """The order of return events (ties broken by thread, then invocation)."""
    return (call.returned, call.thread, call.invoked)


def _search(policy: Policy, calls: Sequence[Call], now: float, budget: int,
            pending: frozenset[int] = frozenset()
            ) -> tuple[bool | None, int, list[Call]]:
    """The fast search (`linsearch.search`): as `plain_search`, which is its oracle."""
    found, explored, left = linsearch.search(policy, linsearch.plain(calls), now, budget,
                                             pending)
    return found, explored, sorted((calls[i] for i in left), key=lambda c: c.invoked)


def plain_search(policy: Policy, calls: Sequence[Call], now: float, budget: int,
                 pending: frozenset[int] = frozenset()
                 ) -> tuple[bool | None, int, list[Call]]:
    """Wing & Gong's search, depth first, with Lowe's memo: is there an order of `calls`
    the model agrees with? Calls whose index is in `pending` have not returned yet: they
    may take effect with any result, or not at all. Returns (True, False or None for over
    budget; states explored; on a failure the calls left after the longest orderable
    prefix, by invocation).

    Each thread's calls are sequential, so "which calls are linearized" is a position per
    thread, and the calls that may go next are the threads' next calls invoked before any
    of them returned."""
    threads = sorted({c.thread for c in calls})
    per = [sorted((i for i, c in enumerate(calls) if c.thread == t),
                  key=lambda i: calls[i].invoked) for t in threads]
    ends = tuple(len(p) for p in per)
    # done once every call that returned is placed (a pending call is its thread's last)
    need = tuple(max((k + 1 for k, i in enumerate(p) if i not in pending), default=0)
                 for p in per)
    returned = [float("inf") if i in pending else c.returned for i, c in enumerate(calls)]
    seen: set[tuple[tuple[int, ...], spec.ModelState]] = set()
    best: tuple[int, ...] = tuple(0 for _ in per)
    stack: list[tuple[tuple[int, ...], spec.ModelState]] = [(best, spec.initial(policy))]
    explored = 0
    while stack:
        pos, state = stack.pop()
        if all(p >= n for p, n in zip(pos, need, strict=True)):
            return True, explored, []
        if (pos, state) in seen:
            continue
        seen.add((pos, state))
        explored += 1
        if explored > budget:
            return None, explored, []
        if sum(pos) > sum(best):
            best = pos
        heads = [(t, per[t][pos[t]]) for t in range(len(per)) if pos[t] < ends[t]]
        horizon = min(returned[i] for _, i in heads)
        # pushed latest-invoked first, so the earliest-invoked call is tried first
        for t, i in sorted(heads, key=lambda h: -calls[h[1]].invoked):
            c = calls[i]
            if c.invoked > horizon:
                continue
            new_state, expected = spec.apply(state, c.op, c.args, now)
            if i in pending or same_result(expected, c.result):
                stack.append(((*pos[:t], pos[t] + 1, *pos[t + 1:]), new_state))
    left = sorted((calls[i] for t in range(len(per)) for i in per[t][best[t]:]),
                  key=lambda c: c.invoked)
    return False, explored, left


# --- shrinking a failure -----------------------------------------------------------------

def _fails_at(policy: Policy, calls: Sequence[Call], now: float, budget: int,
              cut: Call, inclusive: bool) -> bool:
    """Does the prefix of events up to `cut`'s return (with it, or just before it) fail?
    Its calls are those of `calls` invoked by then; those not yet returned are pending.
    Over budget counts as not shown to fail."""
    end = _key(cut)
    sub = [c for c in calls if c.invoked <= cut.returned]
    pending = frozenset(i for i, c in enumerate(sub)
                        if _key(c) > end or (not inclusive and _key(c) == end))
    return _search(policy, sub, now, budget, pending)[0] is False


def culprit(policy: Policy, calls: Sequence[Call], now: float, *,
            budget: int | None = None) -> Call | None:
    """The call whose return first makes `calls` unorderable: the end of the shortest
    failing prefix of the history's events. None if the whole history can be ordered (or
    the search ran over its budget)."""
    returns = sorted(calls, key=_key)
    limit = _budget(budget, calls)
    if not returns or not _fails_at(policy, calls, now, limit, returns[-1], True):
        return None
    low, high = 0, len(returns) - 1  # prefixes only grow: the first failing one is found
    while low < high:                # by bisection
        mid = (low + high) // 2
        if _fails_at(policy, calls, now, limit, returns[mid], True):
            high = mid
        else:
            low = mid + 1
    return returns[low]


def shrink(policy: Policy, calls: Sequence[Call], now: float, *,
           budget: int | None = None) -> tuple[list[Call], Call] | None:
    """A 1-minimal sub-history of `calls` that cannot be ordered, and its culprit (see the
    module docstring), or None if `calls` can be ordered. The sub-history is by
    invocation; its calls returning after the culprit are pending (any result fits)."""
    blamed = culprit(policy, calls, now, budget=budget)
    if blamed is None:
        return None
    limit = _budget(budget, calls)
    kept = [c for c in calls if c.invoked <= blamed.returned]

    def still(sub: list[Call]) -> bool:
        return (_fails_at(policy, sub, now, limit, blamed, True)
                and not _fails_at(policy, sub, now, limit, blamed, False))

    changed = True
    while changed:  # to a fixpoint: a drop can make an earlier-kept call droppable
        changed = False
        for call in sorted(kept, key=lambda c: -c.invoked):
            if call is blamed:
                continue
            fewer = [c for c in kept if c is not call]
            if still(fewer):
                kept, changed = fewer, True
    return sorted(kept, key=lambda c: c.invoked), blamed


# --- sequential first ------------------------------------------------------------------

def sequential(factory: StoreFactory, policy: Policy, calls: Iterable[Call]) -> str | None:
    """Replay `calls` one at a time, in the order given, on a fresh store in this thread
    and against the model; the first disagreement, or None."""
    replayed, expected = _replay(factory, policy, list(calls))
    if expected is _AGREED:
        return None
    c = replayed[-1]
    model, shown = _show(expected), _show(c.result)
    if model == shown:  # the difference is in what the short form leaves out
        model, shown = repr(expected), repr(c.result)
    return f"{_call_text(c.op, c.args)}: model {model}, store {shown}"


_AGREED = object()


def _replay(factory: StoreFactory, policy: Policy, calls: Sequence[Call]
            ) -> tuple[list[Call], object]:
    """Replay `calls` in order on a fresh store, up to the first whose result is not the
    model's: the calls with the results the replay gave, and the model's result for the
    last one (`_AGREED` if every result was the model's)."""
    clock = VirtualClock()
    store = factory(policy, clock)
    state = spec.initial(policy)
    replayed: list[Call] = []
    try:
        for c in calls:
            state, expected = spec.apply(state, c.op, c.args, clock())
            try:
                actual: object = getattr(store, c.op)(*c.args)
            except Exception as error:
                actual = error
            replayed.append(Call(c.thread, c.op, c.args, c.invoked, c.returned, actual))
            if not same_result(expected, actual):
                return replayed, expected
        return replayed, _AGREED
    finally:
        dispose(store)


def sequential_conflict(factory: StoreFactory, policy: Policy, calls: Sequence[Call]
                        ) -> tuple[list[Call], Call, object] | None:
    """A defect without a race, cut to the calls that show it: the calls up to the first
    one the model disagrees with (replayed in the order given), then every other call
    dropped, latest first, while that call still disagrees after those left, to a
    fixpoint. Returns (the calls as replayed, the call that disagrees, the model's result
    for it), or None if none disagrees."""
    replayed, expected = _replay(factory, policy, calls)
    if expected is _AGREED:
        return None
    kept = list(calls[:len(replayed)])
    blamed = kept[-1]
    changed = True
    while changed:  # to a fixpoint: a drop can make an earlier-kept call droppable
        changed = False
        for call in reversed(kept[:-1]):
            fewer = [c for c in kept if c is not call]
            again, model = _replay(factory, policy, fewer)
            if model is not _AGREED and len(again) == len(fewer):  # still at `blamed`
                kept, replayed, expected, changed = fewer, again, model, True
    assert replayed[-1].invoked == blamed.invoked
    return replayed, replayed[-1], expected


# --- the stress check --------------------------------------------------------------------

RUN_IDS = ("a", "b", "c")
#: small caps, so that three ids reach them: one terminal run kept (a second evicts the
#: older), two active at most (a third start is refused)
STRESS_POLICY = Policy(max_terminal=1, max_active=2, max_events_per_run=2)
def stress(factory: StoreFactory, *, threads: int = 4, calls_per_thread: int = 8,
           histories: int = 100, seed: int = 0, policy: Policy | None = None,
           budget: int | None = None) -> tuple[Verdict, list[str]]:
    """`histories` times: `threads` threads, released together, make random calls at
    once on a new store; each history is checked. The first failure is returned with its
    history's calls (sequential defects before races, see the module docstring); else
    "unknown" if some search ran over its budget or no history exercised the racy window
    (no two calls of different threads overlapped), else "pass". Seeded; fixed counts."""
    policy = policy or STRESS_POLICY
    rng = random.Random(seed)
    recorded: list[list[Call]] = []
    explored = overlapped = 0
    over_budget: Verdict | None = None
    for h in range(1, histories + 1):
        calls, now = record(factory, policy, rng, threads, calls_per_thread)
        recorded.append(calls)
        overlapped += overlapping(calls)
        verdict = check_history(policy, calls, now, budget=budget, shrinking=False)
        explored += verdict.explored
        if verdict.verdict == "unknown":
            over_budget = over_budget or verdict
            continue
        if verdict.verdict == "pass":
            continue
        # Before blaming a race: does the store, called one call at a time, already
        # disagree with the model? In invocation order, and in return order: a store
        # that holds a lock for each whole call runs them in about the order they return,
        # so that replay most often repeats what the store did.
        for order, key in (("invocation", _invoked), ("return", _key)):
            ordered = sorted(calls, key=key)
            defect = sequential(factory, policy, ordered)
            if defect is not None:
                failed = Verdict("fail", explored, [defect],
                                 f"sequential: {defect} (history {h}, replayed one call at "
                                 f"a time in {order} order on a fresh store: a defect "
                                 f"without any race)", histories=h, overlapped=overlapped)
                cut = sequential_conflict(factory, policy, ordered)
                if cut is not None:
                    failed.minimal, failed.culprit, failed.expected = cut
                return failed, _lines(calls)
        verdict = check_history(policy, calls, now, budget=budget)
        verdict.explored, verdict.histories, verdict.overlapped = explored, h, overlapped
        if verdict.conflict:
            verdict.unordered = verdict.conflict
        return verdict, _lines(calls)
    if not overlapped:
        return Verdict("unknown", explored, note=f"the racy window was never exercised: "
                       f"no two calls of different threads overlapped in {histories} "
                       f"histories", histories=histories), []
    if over_budget is not None:
        over_budget.explored, over_budget.histories = explored, histories
        over_budget.overlapped = overlapped
        return over_budget, []
    return Verdict("pass", explored, note=f"{histories} histories, {overlapped} with "
                   f"overlapping calls", histories=histories, overlapped=overlapped), []


def overlapping(calls: Iterable[Call]) -> bool:
    """Did two calls of different threads run at the same time?"""
    latest: dict[int, int] = {}  # thread -> the latest return among its calls so far
    for c in sorted(calls, key=lambda c: c.invoked):
        if any(r > c.invoked for t, r in latest.items() if t != c.thread):
            return True
        latest[c.thread] = max(latest.get(c.thread, c.returned), c.returned)
    return False


def record(factory: StoreFactory, policy: Policy, rng: random.Random, threads: int,
           calls_per_thread: int, ops: tuple[str, ...] | None = None
           ) -> tuple[list[Call], float]:
    """One history: `threads` threads, released together by a barrier while the
    interpreter switches threads as often as it can, each making random calls (of `ops`,
    default all) on one new store. Returns the calls and the store's frozen time."""
    clock = VirtualClock()
    store = factory(policy, clock)
    recorder = Recorder(store)
    gate = threading.Barrier(threads)
    plans = [[_random_call(rng, ops or OPS) for _ in range(calls_per_thread)]
             for _ in range(threads)]
    workers = [threading.Thread(target=_play, args=(recorder, gate, t, plans[t]))
               for t in range(threads)]
    try:
        run_burst(workers)
    finally:
        dispose(store)
    return recorder.calls, clock()


def _play(recorder: Recorder, gate: threading.Barrier, thread: int,
          plan: list[tuple[str, tuple[Any, ...]]]) -> None:
    gate.wait(60.0)  # all threads start together (the timeout is a guard only)
    for op, args in plan:
        recorder.call(thread, op, *args)


#: the mix of a random call (start and transition twice as often as the rest)
OPS = ("start", "start", "transition", "transition", "heartbeat", "append_event", "get",
       "list_runs")


def _random_call(rng: random.Random, ops: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
    rid = rng.choice(RUN_IDS)
    op = rng.choice(ops)
    if op == "transition":
        return op, (rid, rng.choice(list(Status)))
    if op == "append_event":
        return op, (rid, "e")
    if op == "list_runs":
        return op, (rng.randint(1, 3),)
    return op, (rid,)


# --- text -----------------------------------------------------------------------------

def _lines(calls: Iterable[Call]) -> list[str]:
    return [str(c) for c in sorted(calls, key=lambda c: c.invoked)]


def _call_text(op: str, args: Iterable[object]) -> str:
    return f"{op}({', '.join(_value(a) for a in args)})"


def _value(value: object) -> str:
    return repr(value.value) if isinstance(value, Status) else repr(value)


def _show(value: object) -> str:
    """A result as a person reads it: a run by id and status, an error by its class."""
    if isinstance(value, BaseException):
        return type(value).__name__
    if isinstance(value, Run):
        return f"Run({value.run_id!r}, {value.status.value!r})"
    if isinstance(value, Page):
        return f"Page([{', '.join(_show(r) for r in value.runs)}], " \
               f"next={value.next_cursor is not None})"
    return repr(value)
