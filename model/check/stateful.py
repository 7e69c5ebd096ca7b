"""The stateful check: any store and the model, driven in lockstep by Hypothesis.

`machine_for(factory)` builds a `RuleBasedStateMachine` whose world is as large as the one
stores live in: every operation with valid, hostile and bad arguments in every position,
calls after `close()`, a clock that steps back, jumps, stands still or reads NaN or an
infinity, the store's own cleanup worker ticking on virtual time, restarts, page walks
across changes. The policy, the run ids (drawn from a pool of hostile but valid ones)
and whether the store is observed after every step or only at the end are drawn at
`@initialize`; a `VirtualClock` the machine owns is the store's only time.

After every step it compares the store's result (value or error class) with the model's
(`runbound.model.spec.apply`), and checks the invariants of `runbound.model.invariants`
on what it observes
itself: the store's `snapshot()` and `len()`, and the threads the store started, counted
from the interpreter (the store's own `cleanup_workers_alive()` is compared with that
count, never trusted). A violation raises that invariant's own exception class, so
Hypothesis reports each invariant apart; the exception carries the program (a list of
steps, `Step`), which `perform` replays step for step: the same code runs a generated
program, a replay and the minimizer (`runbound.model.check.minimize`).

`enforce` picks which invariants raise (all by default). `verify` checks one invariant
per run, so an early, common violation cannot hide a rarer one.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from runbound.model import spec
from runbound.model.calls import (
    READS,
    Step,
    from_json,
    invoke,
    policy_to_json,
    same_result,
    shown,
    step_text,
    to_json,
)
from runbound.model.check.coverage import Coverage
from runbound.model.check.profiles import (
    machine_settings,
)
from runbound.model.clock import VirtualClock, waits_elsewhere
from runbound.model.errors import RunboundError
from runbound.model.invariants import (
    INVARIANTS,
    VIOLATIONS,
    Checker,
    Observation,
    Violation,
    decided_by,
    lease_violations,
    overdue_violations,
    restart_violations,
    retained_violations,
    state_violations,
    step_violations,
    visibility_violations,
)
from runbound.model.lifecycle import TERMINAL, TRANSITIONS, Status
from runbound.model.policy import Policy, SweepMode, UnboundedRetention
from runbound.model.protocol import RunStore, StoreFactory, dispose
from runbound.model.records import MAX_RUN_ID_LENGTH, Page, Run

# the checks draw every policy on purpose, the ones that keep reaped runs forever too
warnings.filterwarnings("ignore", category=UnboundedRetention)

# --- what the machine draws --------------------------------------------------------------

#: Run ids a store must keep exactly (R1): what real systems send, and words a protocol
#: might take for a reply. An example draws two or three, so calls still collide (an
#: active run re-started, a terminal one replaced); "a", "b", "c" come first, so a
#: counterexample shrinks to plain ids unless the hostile ones matter.
RUN_IDS = ("a", "b", "c", "ERR", "OK", "nil", "'; DROP TABLE runs; --", '"q"', "{x}", "*",
           "?", "a\nb", "nul\x00", "\U0001f600", "x" * MAX_RUN_ID_LENGTH, "%s", "\\", " ")
#: Payloads a store must keep exactly (R3), the empty one included.
PAYLOADS = ("e1", "{}", "", "ERR", "nil", "\x00", "a\nb", "\U0001f600" * 3,
            "'; DROP TABLE runs; --", "x" * 300, '{"k": [1, 2]}', "*")

#: stands for one of the example's valid run ids in BAD_CALLS
ID = object()


def _huge(digits: int) -> object:
    """10**digits in the program's JSON form: Hypothesis shows what it draws, and Python
    will not write an int of more than 4,300 digits in decimal."""
    return {"int": hex(10**digits)}
#: Each a call every store must refuse with InvalidArgument (or StoreClosed once closed),
#: and change nothing: every bad argument in every position (R1-R3, L2, L3, W1), and two
#: bad arguments at once (the left one names the rule).
_BAD_IDS: tuple[object, ...] = ("", "x" * (MAX_RUN_ID_LENGTH + 1), 7, None, b"a", "\ud800",
                                "a\udfff", 1.5)
BAD_CALLS: tuple[tuple[str, tuple[object, ...]], ...] = (
    *((op, (bad,)) for op in ("start", "heartbeat", "get") for bad in _BAD_IDS),
    *(("transition", (bad, "running")) for bad in _BAD_IDS),
    *(("append_event", (bad, "e1")) for bad in _BAD_IDS),
    ("transition", ("", "paused")),
    *(("transition", (ID, bad)) for bad in ("paused", 3, None, "RUNNING", "")),
    *(("append_event", (ID, bad)) for bad in (12, b"bytes", None, "\udfff", ["e"])),
    ("append_event", (7, 12)),
    *(("list_runs", (bad,)) for bad in (0, -3, True, 2.5, "5", 2**63, _huge(5000))),
    ("list_runs", (5, "paused")),
    ("list_runs", (0, "paused")),
    *(("list_runs", (5, None, bad)) for bad in (17, "", "\u00b2", "\uff11", "-1", " 1",
                                                 "9" * 5000, str(2**63), "x")),
    *(("start_cleanup_worker", (bad,)) for bad in (0, -1.0, math.nan, math.inf, True,
                                                    _huge(400), "5", 2e9)),
)
#: what a misbehaving clock reads, until the clock is next advanced
CLOCK_FAULTS: tuple[tuple[str, float], ...] = (
    ("back", -30.0), ("back", -1.0), ("back", -3600.0), ("nan", math.nan),
    ("inf", math.inf), ("-inf", -math.inf), ("year", 365 * 86400.0), ("still", 0.0))
#: worker intervals: short enough that it ticks within a program
INTERVALS = (5.0, 20.0)
#: the kinds of step, with their weights: most steps move runs along their lives
KINDS: dict[str, int] = {"lifecycle": 6, "touch": 2, "get": 1, "list": 1, "next_page": 1,
                         "prune": 1, "clock": 2, "worker": 1, "hostile": 2, "restart": 1}


#: one step of a program: a call, a clock move or fault, a restart, or the set-up
def probe_programs(capabilities: Any = None) -> list[list[Step]]:
    """The built-in programs `verify` and `conform` replay before the search: the probe
    program; the one policy it cannot have at once: a TTL of 0 with a lease, where the
    order inside a sweep shows (a reaped run expires in the same sweep); and admission
    at its bound. Between them every witness of the property registry
    (`Invariant.witnesses`) happens at least once, so a short search is not vacuous by
    chance."""
    zero: list[Step] = [
        {"op": "setup", "policy": policy_to_json(Policy(ttl=0.0, stale_after=5.0)),
         "ids": ["a", "b", "c"], "observe": True},
        {"op": "start", "args": ["a"]}, {"op": "advance_clock", "args": [5.0]},
        {"op": "prune"}, {"op": "start", "args": ["b"]},
        {"op": "advance_clock", "args": [5.0]}, {"op": "start", "args": ["c"]}]
    # admission control at its bound (I3), then the cap evicting beside an active run
    # (I1, I2, I4): a store whose cap counts active runs evicts a here
    full: list[Step] = [
        {"op": "setup", "policy": policy_to_json(Policy(max_active=2, max_terminal=1)),
         "ids": ["a", "b", "c"], "observe": True},
        {"op": "start", "args": ["a"]}, {"op": "start", "args": ["b"]},
        {"op": "start", "args": ["c"]}, {"op": "transition", "args": ["b", "cancelled"]},
        {"op": "start", "args": ["c"]}, {"op": "transition", "args": ["c", "cancelled"]},
        {"op": "prune"}]
    # the sweep modes: a stale run is reaped by the lazy sweep in lazy and both modes, by
    # nothing but the worker in background mode (S1-style stores get these wrong)
    modes: list[list[Step]] = [[
        {"op": "setup", "policy": policy_to_json(Policy(stale_after=5.0, sweep=mode)),
         "ids": ["a", "b", "c"], "observe": True},
        {"op": "start", "args": ["a"]}, {"op": "advance_clock", "args": [6.0]},
        {"op": "start", "args": ["a"]}, {"op": "get", "args": ["a"]},
        # and a worker left running at close: close() must stop it and wait (W3, I16)
        {"op": "start_cleanup_worker", "args": [5.0]}, {"op": "advance_clock", "args": [6.0]},
        {"op": "close"}]
        for mode in (SweepMode.BOTH, SweepMode.BACKGROUND)]
    return [probe_program(capabilities),
            *([step for step in program if capabilities is None
               or capabilities.allows(step["op"])] for program in (zero, full, *modes))]


def probe_program(capabilities: Any = None) -> list[dict[str, Any]]:
    """Every bad call once, where a search would rarely line them up: on an open store;
    while the clock reads NaN (an argument error comes before the clock's, C1 before the
    rules); after a read raised the mark and the clock stepped back (reads and refusals
    raise the mark); and after close (L1 before anything). State-independent, so one
    program shows them all; `verify` and `conform` replay it before the search."""
    def bad(arg: object) -> object:
        return to_json("a" if arg is ID else arg)

    bad_calls: list[Step] = [{"op": op, "args": [bad(a) for a in args]}
                             for op, args in BAD_CALLS]
    every_op: list[Step] = [
        {"op": "start", "args": ["b"]}, {"op": "transition", "args": ["a", "running"]},
        {"op": "heartbeat", "args": ["a"]}, {"op": "append_event", "args": ["a", "e"]},
        {"op": "get", "args": ["a"]}, {"op": "list_runs", "args": [2]}, {"op": "prune"},
        {"op": "len"}, {"op": "snapshot"}, {"op": "start_cleanup_worker", "args": [5.0]},
        {"op": "stop_cleanup_worker", "args": [], "store_args": [10.0]},
        {"op": "cleanup_workers_alive"}]
    policy = policy_to_json(Policy(ttl=10.0, max_terminal=3, max_events_per_run=2,
                                   stale_after=5.0))
    program: list[Step] = [
        {"op": "setup", "policy": policy, "ids": ["a", "b", "c"], "observe": True},
        {"op": "start", "args": ["a"]}, *bad_calls,
        {"op": "clock_fault", "args": [math.nan]}, *bad_calls, *every_op[:8],
        # the mark: a get, a listing and a refused call each raise it, and it holds when
        # the clock then reads a time before the run expired (times from 1000)
        {"op": "advance_clock", "args": [1.0]},
        {"op": "start", "args": ["c"]}, {"op": "transition", "args": ["c", "cancelled"]},
        {"op": "advance_clock", "args": [20.0]}, {"op": "get", "args": ["c"]},
        {"op": "clock_fault", "args": [1005.0]}, {"op": "get", "args": ["c"]},
        {"op": "advance_clock", "args": [1.0]},
        {"op": "start", "args": ["d"]}, {"op": "transition", "args": ["d", "cancelled"]},
        {"op": "advance_clock", "args": [20.0]}, {"op": "list_runs", "args": [3]},
        {"op": "clock_fault", "args": [1030.0]}, {"op": "get", "args": ["d"]},
        {"op": "advance_clock", "args": [1.0]},
        {"op": "start", "args": ["e"]}, {"op": "transition", "args": ["e", "cancelled"]},
        {"op": "advance_clock", "args": [20.0]}, {"op": "transition", "args": ["zz", "running"]},
        {"op": "clock_fault", "args": [1050.0]}, {"op": "get", "args": ["e"]},
        {"op": "start", "args": ["b"]}, {"op": "heartbeat", "args": ["a"]},
        # the lease: an appended event renews it as a heartbeat does; a heartbeat stamps
        # updated_at; the lease never touches a terminal run; the ring buffer keeps the
        # newest events and counts the rest
        {"op": "advance_clock", "args": [1.0]}, {"op": "start", "args": ["g"]},
        {"op": "advance_clock", "args": [3.0]}, {"op": "append_event", "args": ["g", "e"]},
        {"op": "advance_clock", "args": [3.0]}, {"op": "prune"}, {"op": "get", "args": ["g"]},
        {"op": "start", "args": ["j"]}, {"op": "advance_clock", "args": [2.0]},
        {"op": "heartbeat", "args": ["j"]},
        {"op": "start", "args": ["k"]}, {"op": "transition", "args": ["k", "cancelled"]},
        {"op": "advance_clock", "args": [7.0]}, {"op": "prune"}, {"op": "get", "args": ["k"]},
        {"op": "start", "args": ["m"]}, {"op": "append_event", "args": ["m", "1"]},
        {"op": "append_event", "args": ["m", "2"]}, {"op": "append_event", "args": ["m", "3"]},
        {"op": "get", "args": ["m"]},
        # a walk with a status filter, page by page
        {"op": "start", "args": ["h"]}, {"op": "start", "args": ["i"]},
        {"op": "list_runs", "args": [1, "pending"]}, {"op": "list_next", "args": [1]},
        {"op": "list_next", "args": [1]},
        # the worker: ticks every 5 s on the store's clock, and the store is looked at
        # after each (E1, I14)
        {"op": "advance_clock", "args": [1.0]},
        {"op": "start_cleanup_worker", "args": [5.0]},
        {"op": "start", "args": ["f"]}, {"op": "transition", "args": ["f", "cancelled"]},
        {"op": "advance_clock", "args": [6.0]},
        {"op": "start", "args": ["n"]}, {"op": "transition", "args": ["n", "cancelled"]},
        {"op": "advance_clock", "args": [31.0]},
        {"op": "stop_cleanup_worker", "args": [], "store_args": [10.0]},
        {"op": "advance_clock", "args": [1.0]}, {"op": "close"}, *every_op, *bad_calls]
    return [step for step in program if capabilities is None
            or capabilities.allows(step["op"])]


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


@dataclass(frozen=True)
class CursorPair:
    """A page's cursor for the model and the store's own, which may differ in form."""

    model: str
    store: str
    status: Status | None


class CheckUnknown(Exception):
    """The check could not decide: the machine could not drive the store (a thread it
    started neither sleeps on its clock nor ends). Reported as "unknown", never a pass."""


class StoreMachine(RuleBasedStateMachine):
    """Drive `factory`'s store and the model in lockstep. Subclass with `machine_for`."""

    factory: ClassVar[StoreFactory]
    enforce: ClassVar[frozenset[str]] = frozenset(decided_by(Checker.STATEFUL))
    #: whether `restart` is a rule: on for durable stores and for I17's own run
    restarts: ClassVar[bool] = False
    #: what the store has (runbound.model.check.conformance.Capabilities); None: everything
    capabilities: ClassVar[Any] = None
    #: time.perf_counter() of the first violation of each invariant (for `verify`)
    first_seen: ClassVar[dict[str, float]]
    #: calls made, over every example of the class (for `verify`'s report)
    calls: ClassVar[list[int]]
    #: what the model's steps did, over every example (no vacuous pass: `coverage`)
    coverage: ClassVar[Coverage]

    def __init__(self) -> None:
        super().__init__()
        self.store: RunStore | None = None
        self.program: list[Step] = []

    # --- set-up and tear-down ------------------------------------------------------

    @initialize(policy=policies(),
                ids=st.lists(st.sampled_from(RUN_IDS), min_size=2, max_size=3, unique=True),
                started=st.lists(st.integers(0, 2), unique=True, max_size=3),
                observe=st.sampled_from([True, False]),
                close_after=st.sampled_from([None, 6, 2]),
                enabled=st.fixed_dictionaries({k: st.sampled_from([True, False])
                                               for k in KINDS if k != "lifecycle"}))
    def setup(self, policy: Policy, ids: list[str], started: list[int], observe: bool,
              close_after: int | None, enabled: dict[str, bool]) -> None:
        """Build the store, and start a few runs so that most examples begin with
        something to evict. `observe=False`: the store is looked at only at the end, so a
        store whose reads have effects (an LRU) is not masked by the looking."""
        self.perform({"op": "setup", "policy": policy_to_json(policy), "ids": ids,
                      "observe": observe})
        #: close() only after this many steps (None: never), so most of a program
        #: runs on an open store
        self.close_after = close_after
        #: the kinds of step this example may take (swarm testing)
        self.enabled = {"lifecycle", *(k for k, on in enabled.items() if on)}
        for i in started:
            self.perform({"op": "start", "args": [ids[i % len(ids)]]})

    def begin(self, policy: Policy, ids: list[str], observe: bool) -> None:
        self.policy = policy
        self.ids = ids
        self.observe = observe
        self.clock = VirtualClock()
        self.model = spec.initial(policy)
        #: threads alive before the store existed: any other is the store's
        self.baseline = set(threading.enumerate())
        #: the store's threads seen waiting on real time rather than on its clock
        self.off_clock: set[threading.Thread] = set()
        self.store = type(self).factory(policy, self.clock)
        self.interval: float | None = None   # the worker's, while the model runs one
        self.due: float | None = None        # clock time of the worker's next sweep
        self.since: float | None = None      # effective time the worker started
        #: walks under way: the cursors of pages that have a next one
        self.walks: list[CursorPair] = []
        self.seen = self._observe() if observe else Observation(())

    def teardown(self) -> None:
        if self.store is None:
            return
        found: list[Violation] = []
        if not self.observe and not self.model.closed:
            self.seen = self._observe()  # the one look of an end-only example
            found += self._compare_retained()
            found += state_violations(self.seen, self.policy)
        store = self._store()
        alive: list[threading.Thread] = []

        def close() -> None:
            self._stop_observed(store.close)
            store.close()  # closing twice is safe
            # counted before the release, which ends a replica's threads only the
            # harness can end
            alive.extend(self._threads())

        dispose(store, close=close)
        if alive:
            found.append(("I16", f"{len(alive)} thread(s) the store started still alive "
                                 "after close()"))
        self._raise(found)

    # --- the one rule ------------------------------------------------------------------
    # One rule that picks a kind of step by weight, rather than a rule per kind: Hypothesis
    # picks rules uniformly (and favours the first in its own order), which spent most
    # steps on sweeps and reads and left the lifecycle, where most defects are, rare.
    # Swarm testing (a random subset of kinds switched off per example, as Hypothesis does
    # for rules) is kept: `setup` draws the subset.

    def _id(self, i: int) -> str:
        return self.ids[i % len(self.ids)]

    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        kinds = [k for k in KINDS if k in self.enabled and self._can(k)]
        kind = data.draw(st.sampled_from([k for k in kinds for _ in range(KINDS[k])]))
        getattr(self, f"_{kind}")(data)

    def _can(self, kind: str) -> bool:
        if kind == "worker":
            return self._has("worker")
        if kind == "restart":
            return self.restarts and not self.model.closed
        if kind == "next_page":
            return bool(self.walks)
        return True

    def _lifecycle(self, data: st.DataObject) -> None:
        """Move a run along its life as the model sees it. Absent: start it. Active:
        a transition the table allows (choices 0-2), one it forbids (3), or a duplicate
        start (4). Terminal: restart it (0), or try another terminal status (1-3) or
        running (4), which must be refused."""
        run_id = self._id(data.draw(st.integers(0, 2)))
        choice = data.draw(st.integers(0, 4))
        run = spec.find(self.model.runs, run_id)
        if run is None or (run.terminal and choice == 0) or (run.active and choice == 4):
            self.perform({"op": "start", "args": [run_id]})
            return
        if run.terminal:
            others = sorted(TERMINAL - {run.status})
            target = others[choice % 2] if choice < 4 else Status.RUNNING
        elif choice == 3:
            target = data.draw(st.sampled_from(sorted(set(Status) - TRANSITIONS[run.status])))
        else:
            allowed = sorted(TRANSITIONS[run.status])
            target = allowed[choice % len(allowed)]
        self.perform({"op": "transition", "args": [run_id, target.value]})

    def _touch(self, data: st.DataObject) -> None:
        """A heartbeat, or an event appended (which renews the lease too)."""
        run_id = self._id(data.draw(st.integers(0, 2)))
        payload = data.draw(st.none() | st.sampled_from(PAYLOADS))
        if payload is not None and not self._has("events"):
            payload = None
        if payload is None and not self._has("heartbeat"):
            if not self._has("events"):
                return
            payload = "e1"
        if payload is None:
            self.perform({"op": "heartbeat", "args": [run_id]})
        else:
            self.perform({"op": "append_event", "args": [run_id, payload]})

    def _get(self, data: st.DataObject) -> None:
        self.perform({"op": "get", "args": [self._id(data.draw(st.integers(0, 2)))]})

    def _prune(self, data: st.DataObject) -> None:
        self.perform({"op": "prune"})

    def _list(self, data: st.DataObject) -> None:
        """The first page of a walk."""
        status = data.draw(st.none() | st.sampled_from(list(Status)))
        self._page(data.draw(st.integers(1, 3)), status, None)

    def _next_page(self, data: st.DataObject) -> None:
        """The next page of a walk begun earlier: runs may have started, ended, expired
        or been evicted since."""
        pair = self.walks.pop(data.draw(st.integers(0, len(self.walks) - 1)))
        self._page(data.draw(st.integers(1, 3)), pair.status, pair)

    def _clock(self, data: st.DataObject) -> None:
        seconds = data.draw(st.sampled_from([1.0, 5.0, 0.5, 20.0, 61.0]))
        grain = float(getattr(type(self).capabilities, "clock_granularity", 0.0) or 0.0)
        if grain > 0:  # a store that keeps coarser times sees whole steps only
            seconds = math.ceil(seconds / grain) * grain
        self.perform({"op": "advance_clock", "args": [seconds]})

    def _worker(self, data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            interval = data.draw(st.sampled_from(INTERVALS))
            self.perform({"op": "start_cleanup_worker", "args": [interval]})
        else:
            self.perform({"op": "stop_cleanup_worker", "args": [], "store_args": [10.0]})

    def _hostile(self, data: st.DataObject) -> None:
        """The world outside the happy path: a bad argument (every argument in every
        position), a misbehaving clock, `len()`, or `close()` (every later call must
        then be refused with StoreClosed, L1)."""
        kind = data.draw(st.sampled_from(["bad", "clock", "len", "close"]))
        if kind == "bad":
            op, args = data.draw(st.sampled_from(BAD_CALLS))
            caps = type(self).capabilities
            if caps is None or caps.allows(op):
                self.perform({"op": op, "args": [to_json(self.ids[0] if a is ID else a)
                                                 for a in args]})
        elif kind == "clock":
            fault, value = data.draw(st.sampled_from(CLOCK_FAULTS))
            if fault == "year":
                self.perform({"op": "advance_clock", "args": [value]})
            elif fault != "still":
                reading = self.clock.time + value if fault == "back" else value
                self.perform({"op": "clock_fault", "args": [reading]})
        elif kind == "len":
            self.perform({"op": "len"})
        elif not self.model.closed and self.close_after is not None \
                and len(self.program) > self.close_after:
            self.perform({"op": "close"})

    def _restart(self, data: st.DataObject) -> None:
        """Stop the process and start it again: the store reopens what it stored (its
        `reopen()`), or, having none, starts as empty as a new process would."""
        self.perform({"op": "restart"})

    def _has(self, capability: str) -> bool:
        caps = type(self).capabilities
        return caps is None or bool(getattr(caps, capability))

    @precondition(lambda self: self.store is not None and self.observe)
    @invariant()
    def observed_invariants_hold(self) -> None:
        # after set-up and between steps; the per-step checks run inside `perform`
        self._raise(state_violations(self.seen, self.policy))

    # --- one step of a program: generated, replayed or minimized alike ------------------

    def perform(self, step: Step) -> tuple[object, object]:
        """Do one step and check it. Returns (model's result, store's result) for calls."""
        type(self).calls[0] += 1
        # as JSON and back: the program is data a file can hold, and every value is a
        # plain one (on Hypothesis's CrossHair backend a drawn value may be symbolic, and
        # must not reach the store's threads)
        step = json.loads(json.dumps(step))
        op = step["op"]
        args = tuple(from_json(a) for a in step.get("args", []))
        if op == "setup":
            self.program.append(step)
            self.begin(Policy(**step["policy"]), list(step.get("ids", ["a", "b", "c"])),
                       bool(step.get("observe", True)))
            return None, None
        if op == "list_next":  # the next page of the latest walk: a step of the program
            if self.walks:     # is the call it makes, with the cursors it had
                pair = self.walks.pop()
                self._page(int(step["args"][0]), pair.status, pair)
            return None, None
        self.program.append(step)
        if op == "advance_clock":
            self._advance(float(cast(float, args[0])))
        elif op == "clock_fault":
            self.clock.fault(cast(float, args[0]))
        elif op == "restart":
            self._reopen()
        else:
            store_args = step.get("store_args")
            return self._do(op, args, None if store_args is None
                            else tuple(from_json(a) for a in store_args))
        return None, None

    def _advance(self, seconds: float) -> None:
        """Time passes. Up to an hour it passes smoothly: the store's own worker, if the
        model runs one, sweeps at each multiple of its interval on the way (on the
        store's clock), and the model sweeps there with it. Longer, the clock jumps: the
        worker wakes once, at the end. Then the store is looked at again."""
        self.clock.fault(None)
        target = self.clock.time + seconds
        while self.due is not None and self.due <= target:
            self.clock.advance((self.due if seconds <= 3600 else target) - self.clock.time)
            self._settle()
            before = self.model
            self.model, _ = spec.apply(self.model, "prune", (), self.clock())
            self.coverage.step("worker", (), before, self.model, None)
            assert self.interval is not None
            self.due = self.clock.time + self.interval
            self._look("the worker's sweep", (), refused=False, now=self.model.clock)
        self.clock.advance(target - self.clock.time)
        self._settle()
        self._look("advance_clock", (), refused=False, now=self.model.clock)

    def _settle(self) -> None:
        """Wait until the store's threads are asleep on the clock again. A thread seen
        waiting on real time instead (rule W2) is a worker the clock cannot drive: its
        sweeps never come, and E1/E2 are broken on this store."""
        threads = [t for t in self._threads() if t not in self.off_clock]
        if not self.clock.settle(threads, elsewhere=waits_elsewhere):
            raise CheckUnknown("a thread the store started neither sleeps on the store's "
                               "clock (runbound.model.clock.sleep, rule W2) nor ends: the machine "
                               "cannot run its worker on virtual time")
        stray = [t for t in threads if t.is_alive() and waits_elsewhere(t)]
        if stray:
            self.off_clock.update(stray)
            found = [(iid, f"thread {t.name!r} the store started waits on real time, not "
                           "on the store's clock (rule W2): its sweeps never come under "
                           "the store's time") for t in stray for iid in ("E1", "E2")]
            self._raise(found)

    def _reopen(self) -> None:
        old = self._store()
        if not self.observe:  # an end-only example looks once before the restart too
            self.seen = self._observe()
        dispose(old, close=lambda: self._stop_observed(old.close))
        reopen = getattr(old, "reopen", None)
        self.store = reopen() if callable(reopen) else type(self).factory(self.policy,
                                                                         self.clock)
        self.model = spec.restart(self.model)
        self.interval = self.due = self.since = None
        before, self.seen = self.seen, self._observe()
        self._raise(restart_violations(before, self.seen) + self._compare_retained())

    def _page(self, limit: int, status: Status | None, pair: CursorPair | None) -> None:
        step: Step = {"op": "list_runs",
                      "args": [limit, None if status is None else status.value,
                               None if pair is None else pair.model]}
        if pair is not None:
            step["store_args"] = [limit, None if status is None else status.value,
                                  pair.store]
        self.perform(step)

    def _do(self, op: str, args: tuple[Any, ...], store_args: tuple[Any, ...] | None
            ) -> tuple[object, object]:
        store = self._store()
        now = self.clock()
        new_model, expected = spec.apply(self.model, op, args, now)
        self.coverage.step(op, args, self.model, new_model, expected)
        call_args = args if store_args is None else store_args
        if op in ("stop_cleanup_worker", "close"):
            actual = self._stop_observed(lambda: invoke(store, op, call_args))
        else:
            actual = invoke(store, op, call_args)
        if op == "start_cleanup_worker" and actual is True:
            self._settle()  # the new worker is asleep on the clock: its first tick is due
        self.model = new_model
        self._track_worker(op, args, expected)
        if (op == "list_runs" and isinstance(expected, Page) and isinstance(actual, Page)
                and expected.next_cursor is not None and actual.next_cursor is not None):
            # a walk under way: a later step may ask for its next page
            status = args[1] if len(args) > 1 and args[1] is not None else None
            self.walks.append(CursorPair(expected.next_cursor, actual.next_cursor,
                                         None if status is None else Status(status)))
        refused = isinstance(actual, RunboundError)
        found: list[Violation] = []
        if not same_result(expected, actual):
            found.append(("I13", f"{_call_text(op, args)}: model {shown(expected)}, "
                                 f"store {shown(actual)}"))
        if op in READS and not isinstance(actual, BaseException):
            runs = actual.runs if isinstance(actual, Page) else (actual,)
            found += visibility_violations(
                (r for r in runs if isinstance(r, Run)), self.policy, self.model.clock)
        found += self._look(op, args, refused=refused, now=self.model.clock, quiet=True)
        if op == "prune" and not isinstance(actual, BaseException) and self.observe:
            found += lease_violations(self.seen.runs, self.policy, self.model.clock)
        self._raise(found, (_call_text(op, args), shown(expected), shown(actual)))
        return expected, actual

    def _track_worker(self, op: str, args: tuple[Any, ...], expected: object) -> None:
        """Follow the model's worker: when it started, and when its next sweep is due."""
        if op == "start_cleanup_worker" and expected is True:
            self.interval = float(args[0])
            self.due = self.clock.time + self.interval
            self.since = self.clock.time
        elif not self.model.worker:
            self.interval = self.due = self.since = None

    def _stop_observed(self, stop: Callable[[], object]) -> object:
        """Make a call that must stop the worker (stop_cleanup_worker, close) from a
        helper thread, with the clock holding every stopped sleeper at a gate: a store
        whose stop returns before its worker has ended is then seen to, every time."""
        workers = self._threads()
        if not workers:
            return stop()
        box: list[object] = []
        caller = threading.Thread(target=lambda: box.append(stop()), name="runbound-stop")
        self.clock.hold_exits()
        try:
            caller.start()
            decided = self.clock.wait_for(lambda: bool(box) or self.clock.at_gate > 0)
            early = bool(box) and any(t.is_alive() for t in workers)
        finally:
            self.clock.release_exits()
        caller.join(30.0)
        if not decided or caller.is_alive():
            raise CheckUnknown("stop_cleanup_worker()/close() neither returned nor let its "
                               "worker stop")
        if early:
            self._raise([("I16", "stop_cleanup_worker()/close() returned while its worker "
                                 "thread was still running (it must wait for it: W3)")])
        return box[0]

    def _look(self, op: str, args: tuple[Any, ...], *, refused: bool, now: float,
              quiet: bool = False) -> list[Violation]:
        """Everything the checker sees for itself after a step: the threads the store
        started, and (when observing every step) what it retains, `len()` included."""
        found: list[Violation] = []
        threads = self._threads()
        workers = int(self.model.worker)
        if len(threads) > 1:
            found.append(("I11", f"{len(threads)} threads the store started are alive "
                                 f"after {op}"))
        if len(threads) > workers and op in ("stop_cleanup_worker", "close"):
            found.append(("I16", f"{len(threads)} thread(s) the store started alive after "
                                 f"{op}()"))
        said = invoke(self._store(), "cleanup_workers_alive", ())
        if said != len(threads):
            found.append(("I13", f"after {op}: cleanup_workers_alive() says "
                                 f"{shown(said)}, the interpreter counts {len(threads)} "
                                 "thread(s) the store started"))
        if self.observe and not self.model.closed:
            before, self.seen = self.seen, self._observe()
            found += state_violations(self.seen, self.policy)
            found += step_violations(before, self.seen, op=op, args=args, refused=refused,
                                     policy=self.policy, now=now)
            found += self._compare_retained()
            if self.since is not None and self.interval is not None:
                found += overdue_violations(self.seen.runs, self.policy, self.since,
                                            self.interval, self.clock.time)
        if not quiet:
            self._raise(found)
        return found

    def _compare_retained(self) -> list[Violation]:
        found = retained_violations(self.seen.by_id(), Observation.of(self.model).by_id())
        size = invoke(self._store(), "len", ())
        if size != len(self.model.runs):
            found.append(("I14", f"len() says {shown(size)}, the model retains "
                                 f"{len(self.model.runs)}"))
        return found

    def _threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t not in self.baseline and t.is_alive() and t.name != "runbound-stop"]

    def _store(self) -> RunStore:
        assert self.store is not None
        return self.store

    def _observe(self) -> Observation:
        return Observation(tuple(self._store().snapshot()), len(self._threads()))

    def _raise(self, found: list[Violation], call: tuple[str, str, str] | None = None
               ) -> None:
        """Raise the first of `found` this machine enforces; `call`: the call it was seen
        after (its text, the model's result and the store's), for the report."""
        cls = type(self)
        for iid, _ in found:
            cls.first_seen.setdefault(iid, time.perf_counter())
        for iid, message in sorted(found, key=lambda v: (v[0][0], int(v[0][1:]))):
            if iid in self.enforce:
                lines = [step_text(s) for s in self.program]
                program = "\n    ".join(lines)
                raise VIOLATIONS[iid](
                    f"{iid} ({INVARIANTS[iid].title}) broken: {message}\n"
                    f"  after {len(lines) - 1} calls:\n    {program}", tuple(lines),
                    tuple(self.program), message, call)


def _call_text(op: str, args: Iterable[object]) -> str:
    return f"{op}({', '.join(shown(a) for a in args)})"


def machine_for(factory: StoreFactory, *, name: str = "StoreMachine",
                enforce: Iterable[str] | None = None,
                restarts: bool = False, capabilities: Any = None) -> type[StoreMachine]:
    """A state machine class checking the stores `factory` builds. Its `.TestCase` is a
    unittest case pytest collects; `verify` runs it with `run_state_machine_as_test`."""
    enforced = frozenset(decided_by(Checker.STATEFUL) if enforce is None else enforce)
    unknown = enforced - INVARIANTS.keys()
    if unknown:
        raise ValueError(f"no such invariants: {sorted(unknown)}")
    attrs = {"factory": staticmethod(factory), "enforce": enforced, "first_seen": {},
             "calls": [0], "restarts": restarts, "capabilities": capabilities,
             "coverage": Coverage()}
    machine = type(name, (StoreMachine,), attrs)
    cast(Any, machine).TestCase.settings = machine_settings()
    return machine
