"""Concurrent histories and the linearizability check against the model.

A `Recorder` wraps a store and records each call of each thread: the operation, its
arguments, when it was invoked and when it returned (`time.perf_counter_ns`, one clock for
all threads), and its result or error. `check_history` then searches for an order of the
calls that (a) respects real time: a call that returned before another was invoked comes
first, and (b) replayed through the model, gives every call the result the store gave
(Wing & Gong's search with Lowe's memoization on (calls linearized, model state)).

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


def check_history(policy: Policy, calls: list[Call], now: float, *,
                  budget: int = 200_000) -> Verdict:
    """Is there an order of `calls`, respecting real time, that the model agrees with?"""
    calls = sorted(calls, key=lambda c: c.invoked)
    n = len(calls)
    everything = (1 << n) - 1
    seen: set[tuple[int, spec.ModelState]] = set()
    best = 0  # the longest prefix linearized, for the report
    stack: list[tuple[int, spec.ModelState]] = [(0, spec.initial(policy))]
    explored = 0
    while stack:
        done, state = stack.pop()
        if done == everything:
            return Verdict("pass", explored)
        if (done, state) in seen:
            continue
        seen.add((done, state))
        explored += 1
        if explored > budget:
            return Verdict("unknown", explored, note=f"search budget of {budget} spent")
        if bin(done).count("1") > bin(best).count("1"):
            best = done
        # a call may go next iff no pending call returned before it was invoked
        pending = [i for i in range(n) if not done >> i & 1]
        horizon = min(calls[i].returned for i in pending)
        for i in pending:
            c = calls[i]
            if c.invoked > horizon:
                break  # sorted by invocation: the rest are later still
            try:
                new_state, expected = MODEL_CALLS[c.op](state, now, c.args)
            except RunboundError as error:
                new_state, expected = state, error
            if same_result(expected, c.result):
                stack.append((done | 1 << i, new_state))
    left = [str(calls[i]) for i in range(n) if not best >> i & 1]
    return Verdict("fail", explored, left[:8],
                   f"no order of {n} calls fits the model; after the longest orderable "
                   f"prefix ({bin(best).count('1')} calls), these cannot be placed")


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
        clock = VirtualClock()
        store = factory(policy, clock)
        recorder = Recorder(store)
        gate = threading.Barrier(threads)
        plans = [[_random_call(rng) for _ in range(calls_per_thread)] for _ in range(threads)]
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
        verdict = check_history(policy, recorder.calls, clock())
        total += verdict.explored
        if verdict.verdict != "pass":
            return verdict, [str(c) for c in sorted(recorder.calls, key=lambda c: c.invoked)]
    return Verdict("pass", total), []


def _play(recorder: Recorder, gate: threading.Barrier, thread: int,
          plan: list[tuple[str, tuple[Any, ...]]]) -> None:
    gate.wait()  # all threads start together
    for op, args in plan:
        recorder.call(thread, op, *args)


def _random_call(rng: random.Random) -> tuple[str, tuple[Any, ...]]:
    rid = rng.choice(RUN_IDS)
    op = rng.choice(["start", "start", "transition", "transition", "heartbeat",
                     "append_event", "get", "list_runs"])
    if op == "transition":
        return op, (rid, rng.choice(list(Status)))
    if op == "append_event":
        return op, (rid, "e")
    if op == "list_runs":
        return op, (rng.randint(1, 3),)
    return op, (rid,)
