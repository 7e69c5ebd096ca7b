"""The stateful check: any store and the model, driven in lockstep by Hypothesis.

`machine_for(factory)` builds a `RuleBasedStateMachine` with a rule per operation, clock
advances, sweeps and worker start/stop. The policy is drawn at `@initialize`; a
`VirtualClock` the machine owns is the store's only time. After every step it compares
the store's result (value or error class) with the model's and checks every invariant of
`model.invariants` on the store's `snapshot()`. A violation raises that invariant's own
exception class, so Hypothesis reports each distinct invariant with its own shrunk
program; the exception also carries the machine's trace of the calls, for `verify`.

`enforce` picks which invariants raise (all by default). `verify` checks one invariant
per run, so an early, common violation cannot hide a rarer one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from model import spec
from model.clock import VirtualClock
from model.errors import RunboundError
from model.invariants import (
    INVARIANTS,
    VIOLATIONS,
    Observation,
    Violation,
    lease_violations,
    restart_violations,
    retained_violations,
    state_violations,
    step_violations,
    visibility_violations,
)
from model.lifecycle import TERMINAL, TRANSITIONS, Status
from model.policy import Policy, SweepMode
from model.protocol import RunStore, StoreFactory
from model.records import MAX_RUN_ID_LENGTH, Page, Run

# --- settings profiles -------------------------------------------------------------------

PROFILES: dict[str, dict[str, Any]] = {
    # CI: every store, every invariant, a few minutes in all
    "default": {"max_examples": 200, "stateful_step_count": 25},
    # RUNBOUND_PROFILE=thorough: long explorations, for a release or a new store
    "thorough": {"max_examples": 2000, "stateful_step_count": 80},
    # RUNBOUND_PROFILE=crosshair: Hypothesis draws through CrossHair's symbolic backend
    # (hypothesis-crosshair), which steers choices down paths random draws rarely take
    "crosshair": {"max_examples": 100, "stateful_step_count": 15, "backend": "crosshair"},
}
#: seconds Hypothesis may spend shrinking one counterexample in `verify` (its own default
#: is 300): past it, the shortest program found so far is reported
SHRINK_SECONDS = {"default": 8, "thorough": 60, "crosshair": 8}
#: examples per (store, invariant) in `verify`: more than the test suite's, since each
#: pair runs alone and a pass is cheap
VERIFY_EXAMPLES = {"default": 500, "thorough": 5000, "crosshair": 100}
for _name, _values in PROFILES.items():
    settings.register_profile(
        f"runbound-{_name}", deadline=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large], **_values)


def profile_name() -> str:
    name = os.environ.get("RUNBOUND_PROFILE", "default")
    if name not in PROFILES:
        raise ValueError(f"RUNBOUND_PROFILE must be one of {sorted(PROFILES)}, got {name!r}")
    return name


def machine_settings(**overrides: Any) -> settings:
    return settings(settings.get_profile(f"runbound-{profile_name()}"), **overrides)


# --- what the machine draws --------------------------------------------------------------

#: Few ids, so calls collide: a start of an active id, a restart of a terminal one.
RUN_IDS = ("a", "b", "c")
#: Each an argument every store must refuse with InvalidArgument, and nothing else.
BAD_CALLS: tuple[tuple[str, tuple[object, ...]], ...] = (
    ("start", ("",)),
    ("start", ("x" * (MAX_RUN_ID_LENGTH + 1),)),
    ("start", (7,)),
    ("get", (None,)),
    ("heartbeat", (b"a",)),
    ("transition", ("a", "paused")),
    ("transition", ("a", 3)),
    ("append_event", ("a", 12)),
    ("append_event", ("a", b"bytes")),
    ("list_runs", (0,)),
    ("list_runs", (-3,)),
    ("list_runs", (True,)),
    ("list_runs", (2.5,)),
    ("list_runs", (5, "paused")),
    ("list_runs", (5, None, 17)),
    ("list_runs", (5, None, "")),
    ("start_cleanup_worker", (0,)),
    ("start_cleanup_worker", (math.nan,)),
    ("start_cleanup_worker", (-1.0,)),
)


def policies() -> st.SearchStrategy[Policy]:
    """Small limits, so a few calls reach every edge. Each shrinks towards 'off'."""
    return st.builds(
        Policy,
        ttl=st.sampled_from([None, 10.0, 0.0, 1.0, 60.0]),
        max_terminal=st.sampled_from([None, 2, 0, 1, 3]),
        max_active=st.sampled_from([None, 2, 1, 3]),
        max_events_per_run=st.sampled_from([None, 2, 0, 1]),
        stale_after=st.sampled_from([None, 20.0, 5.0]),
        sweep=st.sampled_from(list(SweepMode)),
    )


# --- how one call is made on the model and on a store ----------------------------------

ModelCall = Callable[[spec.ModelState, float, tuple[Any, ...]], tuple[spec.ModelState, Any]]

def _arg(args: tuple[Any, ...], i: int) -> Any:
    return args[i] if len(args) > i else None


MODEL_CALLS: dict[str, ModelCall] = {
    "start": lambda m, now, a: spec.start(m, a[0], now),
    "transition": lambda m, now, a: spec.transition(m, a[0], a[1], now),
    "heartbeat": lambda m, now, a: spec.heartbeat(m, a[0], now),
    "append_event": lambda m, now, a: spec.append_event(m, a[0], a[1], now),
    "get": lambda m, now, a: (m, spec.get(m, a[0], now)),
    "list_runs": lambda m, now, a: (m, spec.list_runs(m, a[0], _arg(a, 1), _arg(a, 2), now)),
    "prune": lambda m, now, a: spec.sweep(m, now),
    "start_cleanup_worker": lambda m, now, a: spec.start_worker(m, a[0]),
    "stop_cleanup_worker": lambda m, now, a: spec.stop_worker(m),
}
#: operations whose results are runs a reader can see (checked by I5)
READS = frozenset({"get", "list_runs"})
#: the worker interval a check uses: long enough that it never fires by itself, so
#: sweeps happen exactly when the machine calls `prune` (the worker's tick).
IDLE_INTERVAL = 3600.0


@dataclass(frozen=True)
class CursorPair:
    """A page's cursor for the model and the store's own, which may differ in form."""

    model: str
    store: str
    status: Status | None


def policy_to_json(policy: Policy) -> dict[str, Any]:
    return {f: (v.value if isinstance(v, SweepMode) else v)
            for f, v in ((f, getattr(policy, f)) for f in Policy.__dataclass_fields__)}


def _to_json(value: object) -> object:
    """Arguments as JSON: a status by its name, bytes tagged, the rest as they are."""
    if isinstance(value, Status):
        return value.value
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    return value


def from_json(value: object) -> object:
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return str(value["bytes"]).encode("latin-1")
    return value


def same_result(expected: object, actual: object) -> bool:
    """Does the store's answer match the model's? Errors by class, pages by their runs and
    whether a next page exists (cursors are each store's own), values by equality."""
    if isinstance(expected, RunboundError):
        return type(actual) is type(expected)
    if isinstance(expected, Page):
        return (isinstance(actual, Page) and actual.runs == expected.runs
                and (actual.next_cursor is None) == (expected.next_cursor is None))
    return type(actual) is type(expected) and actual == expected


def _show(value: object) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}({value})"
    return repr(value)


def _call_text(op: str, args: Iterable[object]) -> str:
    return f"{op}({', '.join(repr(a) for a in args)})"


class StoreMachine(RuleBasedStateMachine):
    """Drive `factory`'s store and the model in lockstep. Subclass with `machine_for`."""

    factory: ClassVar[StoreFactory]
    enforce: ClassVar[frozenset[str]] = frozenset(INVARIANTS)
    #: whether `restart` is a rule: on for durable stores and for I17's own run
    restarts: ClassVar[bool] = False
    #: what the store has (model.conformance.Capabilities); None: everything
    capabilities: ClassVar[Any] = None
    #: time.perf_counter() of the first violation of each invariant (for `verify`)
    first_seen: ClassVar[dict[str, float]]

    cursors = Bundle("cursors")

    def __init__(self) -> None:
        super().__init__()
        self.store: RunStore | None = None
        self.trace: list[str] = []
        self.program: list[dict[str, Any]] = []

    # --- set-up and tear-down ------------------------------------------------------

    @initialize(policy=policies(), started=st.lists(st.sampled_from(RUN_IDS), unique=True))
    def setup(self, policy: Policy, started: list[str]) -> None:
        """Build the store, and start a few runs so that most examples begin with
        something to evict."""
        self.policy = policy
        self.clock = VirtualClock()
        self.model = spec.initial(policy)
        self.store = type(self).factory(policy, self.clock)
        self.trace.append(f"store = factory({policy!r}, VirtualClock())")
        self.program.append({"op": "setup", "policy": policy_to_json(policy)})
        self.seen = self._observe()
        for run_id in started:
            self._do("start", run_id)

    def teardown(self) -> None:
        if self.store is None:
            return
        self.store.close()
        self.store.close()  # closing twice is safe
        alive = self.store.cleanup_workers_alive()
        release = getattr(self.store, "release", None)
        if callable(release):  # a replica whose threads only the harness can end
            release()
        if alive:
            self._raise([("I16", f"{alive} cleanup worker(s) alive after close()")])

    # --- the rules ------------------------------------------------------------------
    # Few rules, each covering a family of calls, so that Hypothesis (which picks rules
    # uniformly and switches some off per example) spends most steps moving runs along.

    @rule(run_id=st.sampled_from(RUN_IDS), choice=st.integers(0, 4))
    def lifecycle(self, run_id: str, choice: int) -> None:
        """Move the run along its life as the model sees it. Absent: start it. Active:
        a transition the table allows (choices 0-2), one it forbids (3), or a duplicate
        start (4). Terminal: restart it (0), or try another terminal status (1-3) or
        running (4), which must be refused."""
        run = spec.find(self.model.runs, run_id)
        if run is None or (run.terminal and choice == 0) or (run.active and choice == 4):
            self._do("start", run_id)
        elif run.terminal:
            others = sorted(TERMINAL - {run.status})
            self._do("transition", run_id, others[choice % 2] if choice < 4 else Status.RUNNING)
        elif choice == 3:
            forbidden = sorted(set(Status) - TRANSITIONS[run.status])
            self._do("transition", run_id, forbidden[-1])
        else:
            allowed = sorted(TRANSITIONS[run.status])
            self._do("transition", run_id, allowed[choice % len(allowed)])

    @rule(run_id=st.sampled_from(RUN_IDS), payload=st.none() | st.sampled_from(["e1", "{}"]))
    def touch(self, run_id: str, payload: str | None) -> None:
        """A heartbeat, or an event appended (which renews the lease too)."""
        if payload is not None and not self._has("events"):
            payload = None
        if payload is None and not self._has("heartbeat"):
            if not self._has("events"):
                return
            payload = "e1"
        if payload is None:
            self._do("heartbeat", run_id)
        else:
            self._do("append_event", run_id, payload)

    @rule(run_id=st.sampled_from(RUN_IDS))
    def get(self, run_id: str) -> None:
        self._do("get", run_id)

    @rule(target=cursors, limit=st.integers(1, 3),
          status=st.none() | st.sampled_from(list(Status)))
    def list_runs(self, limit: int, status: Status | None) -> object:
        return self._page(limit, status, None)

    @rule(target=cursors, pair=cursors, limit=st.integers(1, 3))
    def list_next_page(self, pair: CursorPair, limit: int) -> object:
        return self._page(limit, pair.status, pair)

    @rule()
    def prune(self) -> None:
        self._do("prune")

    @rule(seconds=st.sampled_from([1.0, 5.0, 0.5, 20.0, 61.0]))
    def advance_clock(self, seconds: float) -> None:
        grain = float(getattr(type(self).capabilities, "clock_granularity", 0.0) or 0.0)
        if grain > 0:  # a store that keeps coarser times sees whole steps only
            seconds = math.ceil(seconds / grain) * grain
        self.clock.advance(seconds)
        self.trace.append(f"clock.advance({seconds!r})")
        self.program.append({"op": "advance_clock", "args": [seconds]})

    @precondition(lambda self: self._has("worker"))
    @rule(start=st.booleans())
    def cleanup_worker(self, start: bool) -> None:
        if start:
            self._do("start_cleanup_worker", IDLE_INTERVAL)
        else:
            self._do("stop_cleanup_worker", store_args=(10.0,))

    @rule(call=st.sampled_from(BAD_CALLS))
    def bad_input(self, call: tuple[str, tuple[object, ...]]) -> None:
        op, args = call
        needs = {"start_cleanup_worker": "worker", "append_event": "events",
                 "heartbeat": "heartbeat"}.get(op)
        if needs is None or self._has(needs):
            self._do(op, *args)

    def _has(self, capability: str) -> bool:
        caps = type(self).capabilities
        return caps is None or bool(getattr(caps, capability))

    @precondition(lambda self: self.restarts)
    @rule()
    def restart(self) -> None:
        """Stop the process and start it again: the store reopens what it stored (its
        `reopen()`), or, having none, starts as empty as a new process would."""
        assert self.store is not None
        old = self.store
        old.close()
        release = getattr(old, "release", None)
        if callable(release):
            release()
        reopen = getattr(old, "reopen", None)
        self.store = reopen() if callable(reopen) else type(self).factory(self.policy,
                                                                         self.clock)
        self.trace.append("restart()")
        self.program.append({"op": "restart", "args": []})
        self.model = spec.restart(self.model)
        before, self.seen = self.seen, self._observe()
        self._raise(restart_violations(before, self.seen)
                    + retained_violations(self.seen.by_id(), Observation.of(self.model).by_id()))

    @precondition(lambda self: self.store is not None)
    @invariant()
    def observed_invariants_hold(self) -> None:
        # after set-up and between steps; the per-step checks run inside `_do`
        self._raise(state_violations(self.seen, self.policy))

    # --- the lockstep ----------------------------------------------------------------

    def _page(self, limit: int, status: Status | None, pair: CursorPair | None) -> object:
        args = (limit, status, None if pair is None else pair.model)
        store_args = (limit, status, None if pair is None else pair.store)
        expected, actual = self._do("list_runs", *args, store_args=store_args)
        if (isinstance(expected, Page) and isinstance(actual, Page)
                and expected.next_cursor is not None and actual.next_cursor is not None):
            return CursorPair(expected.next_cursor, actual.next_cursor, status)
        return multiple()

    def _do(self, op: str, *args: Any, store_args: tuple[Any, ...] | None = None
            ) -> tuple[object, object]:
        assert self.store is not None
        now = self.clock()
        try:
            new_model, expected = MODEL_CALLS[op](self.model, now, args)
        except RunboundError as error:
            new_model, expected = self.model, error
        try:
            actual: object = getattr(self.store, op)(*(args if store_args is None
                                                       else store_args))
        except Exception as error:  # any exception is a result to compare
            actual = error
        self.trace.append(_call_text(op, args))
        self.program.append({"op": op, "args": [_to_json(a) for a in args],
                             **({} if store_args is None else
                                {"store_args": [_to_json(a) for a in store_args]})})
        self.model = new_model
        before, after = self.seen, self._observe()
        self.seen = after
        model_after = Observation.of(new_model)

        found: list[Violation] = []
        found += state_violations(after, self.policy)
        # I10 judges the store by its own answer: a call it refused must change nothing.
        # (A call it accepted where the model refuses is a wrong result: I13.)
        found += step_violations(before, after, op=op, args=args,
                                 refused=isinstance(actual, RunboundError),
                                 policy=self.policy, now=now)
        if op in READS and not isinstance(actual, BaseException):
            shown = actual.runs if isinstance(actual, Page) else (actual,)
            found += visibility_violations(
                (r for r in shown if isinstance(r, Run)), self.policy, self.clock())
        if op == "prune" and not isinstance(actual, BaseException):
            found += lease_violations(after.runs, self.policy, now)
        if op == "stop_cleanup_worker" and after.workers:
            found.append(("I16", f"{after.workers} cleanup worker(s) alive after "
                                 f"stop_cleanup_worker()"))
        if not same_result(expected, actual):
            found.append(("I13", f"{_call_text(op, args)}: model {_show(expected)}, "
                                 f"store {_show(actual)}"))
        found += retained_violations(after.by_id(), model_after.by_id())
        if after.workers != model_after.workers and not found:
            found.append(("I13", f"after {op}: {after.workers} workers alive, "
                                 f"model has {model_after.workers}"))
        self._raise(found)
        return expected, actual

    def _observe(self) -> Observation:
        assert self.store is not None
        return Observation(tuple(self.store.snapshot()), self.store.cleanup_workers_alive())

    def _raise(self, found: list[Violation]) -> None:
        cls = type(self)
        for iid, _ in found:
            cls.first_seen.setdefault(iid, time.perf_counter())
        for iid, message in sorted(found, key=lambda v: int(v[0][1:])):
            if iid in self.enforce:
                trace = tuple(self.trace)
                program = "\n    ".join(trace)
                raise VIOLATIONS[iid](
                    f"{iid} ({INVARIANTS[iid].title}) broken: {message}\n"
                    f"  after {len(trace) - 1} calls:\n    {program}", trace,
                    tuple(self.program))


def machine_for(factory: StoreFactory, *, name: str = "StoreMachine",
                enforce: Iterable[str] | None = None,
                restarts: bool = False, capabilities: Any = None) -> type[StoreMachine]:
    """A state machine class checking the stores `factory` builds. Its `.TestCase` is a
    unittest case pytest collects; `verify` runs it with `run_state_machine_as_test`."""
    enforced = frozenset(INVARIANTS if enforce is None else enforce)
    unknown = enforced - INVARIANTS.keys()
    if unknown:
        raise ValueError(f"no such invariants: {sorted(unknown)}")
    attrs = {"factory": staticmethod(factory), "enforce": enforced, "first_seen": {},
             "restarts": restarts, "capabilities": capabilities}
    machine = type(name, (StoreMachine,), attrs)
    cast(Any, machine).TestCase.settings = machine_settings()
    return machine
