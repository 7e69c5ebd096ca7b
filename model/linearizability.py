"""Concurrent histories and the linearizability check against the model.

A `Recorder` wraps a store and records each call of each thread: the operation, its
arguments, when it was invoked and when it returned (`time.perf_counter_ns`, one clock for
all threads), and its result or error. `check_history` then searches for an order of the
calls that (a) respects real time: a call that returned before another was invoked comes
first, and (b) replayed through the model, gives every call the result the store gave
(Wing & Gong's search with Lowe's memoization on (calls linearized, model state)),
per run id where the policy and the calls allow it (`partition`).

Time inside the model is frozen: the stress check gives the store a clock that does not
move, so TTL and leases cannot make an order valid or invalid. A search that exceeds its
budget answers "unknown", never "pass". A failure names the calls that cannot be ordered.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from model import spec
from model.clock import VirtualClock
from model.errors import RunboundError
from model.lifecycle import Status
from model.policy import Policy
from model.protocol import StoreFactory
from model.stateful import MODEL_CALLS, same_result


@dataclass(frozen=True)
class Call:
    thread: int
    op: str
    args: tuple[Any, ...]
    invoked: int
    returned: int
    result: Any

    def __str__(self) -> str:
        shown = (f"{type(self.result).__name__}" if isinstance(self.result, BaseException)
                 else repr(self.result))
        return (f"thread {self.thread}: {self.op}{self.args!r} -> {shown} "
                f"[{self.invoked}..{self.returned}]")


class Recorder:
    """Records every call made through it, from any thread."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[Call] = []
        self._lock = threading.Lock()

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
    unordered: list[str] = field(default_factory=list)  # on a failure
    note: str = ""


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


def check_history(policy: Policy, calls: list[Call], now: float, *,
                  budget: int | None = None) -> Verdict:
    """Is there an order of `calls`, respecting real time, that the model agrees with?
    Checked per run id where `partition` allows; the first part that fails decides."""
    parts = partition(policy, calls)
    explored = 0
    for part in parts:
        verdict = _check(policy, part, now, budget or max(200_000, 20 * len(part)))
        explored += verdict.explored
        if verdict.verdict != "pass":
            verdict.explored = explored
            if len(parts) > 1:
                verdict.note += f" (in the history of run {part[0].args[0]!r})"
            return verdict
    return Verdict("pass", explored, note=f"{len(parts)} independent part(s)")


def _check(policy: Policy, calls: list[Call], now: float, budget: int) -> Verdict:
    """Wing & Gong's search, depth first, with Lowe's memo. Each thread's calls are
    sequential, so "which calls are linearized" is a position per thread, and the calls
    that may go next are the threads' next calls invoked before any of them returned."""
    threads = sorted({c.thread for c in calls})
    per = [sorted((c for c in calls if c.thread == t), key=lambda c: c.invoked)
           for t in threads]
    ends = tuple(len(p) for p in per)
    seen: set[tuple[tuple[int, ...], spec.ModelState]] = set()
    best: tuple[int, ...] = tuple(0 for _ in per)
    stack: list[tuple[tuple[int, ...], spec.ModelState]] = [(best, spec.initial(policy))]
    explored = 0
    while stack:
        pos, state = stack.pop()
        if pos == ends:
            return Verdict("pass", explored)
        if (pos, state) in seen:
            continue
        seen.add((pos, state))
        explored += 1
        if explored > budget:
            return Verdict("unknown", explored, note=f"search budget of {budget} spent")
        if sum(pos) > sum(best):
            best = pos
        heads = [(t, per[t][pos[t]]) for t in range(len(per)) if pos[t] < ends[t]]
        horizon = min(c.returned for _, c in heads)
        # pushed latest-invoked first, so the earliest-invoked call is tried first
        for t, c in sorted(heads, key=lambda h: -h[1].invoked):
            if c.invoked > horizon:
                continue
            try:
                new_state, expected = MODEL_CALLS[c.op](state, now, c.args)
            except RunboundError as error:
                new_state, expected = state, error
            if same_result(expected, c.result):
                stack.append(((*pos[:t], pos[t] + 1, *pos[t + 1:]), new_state))
    left = sorted((c for t in range(len(per)) for c in per[t][best[t]:]),
                  key=lambda c: c.invoked)
    return Verdict("fail", explored, [str(c) for c in left[:8]],
                   f"no order of {len(calls)} calls fits the model; after the longest "
                   f"orderable prefix ({sum(best)} calls), these cannot be placed")


RUN_IDS = ("a", "b", "c")


def stress(factory: StoreFactory, *, threads: int = 4, calls_per_thread: int = 25,
           histories: int = 20, seed: int = 0,
           policy: Policy | None = None) -> tuple[Verdict, list[str]]:
    """`histories` times: `threads` threads make random calls at once on a new store;
    each history is checked. The first failure (or unknown) is returned, with the
    history's calls; else a pass."""
    policy = policy or Policy(max_terminal=2, max_active=2, max_events_per_run=2)
    rng = random.Random(seed)
    total = 0
    for _ in range(histories):
        calls, now = record(factory, policy, rng, threads, calls_per_thread)
        verdict = check_history(policy, calls, now)
        total += verdict.explored
        if verdict.verdict != "pass":
            return verdict, [str(c) for c in sorted(calls, key=lambda c: c.invoked)]
    return Verdict("pass", total), []


def record(factory: StoreFactory, policy: Policy, rng: random.Random, threads: int,
           calls_per_thread: int, ops: tuple[str, ...] | None = None
           ) -> tuple[list[Call], float]:
    """One history: `threads` threads, started together, each making random calls (of
    `ops`, default all) on one new store. Returns the calls and the store's frozen time."""
    clock = VirtualClock()
    store = factory(policy, clock)
    recorder = Recorder(store)
    gate = threading.Barrier(threads)
    plans = [[_random_call(rng, ops or OPS) for _ in range(calls_per_thread)]
             for _ in range(threads)]
    workers = [threading.Thread(target=_play, args=(recorder, gate, t, plans[t]))
               for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    release = getattr(store, "release", None)
    if callable(release):
        release()
    return recorder.calls, clock()


def _play(recorder: Recorder, gate: threading.Barrier, thread: int,
          plan: list[tuple[str, tuple[Any, ...]]]) -> None:
    gate.wait()  # all threads start together
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
