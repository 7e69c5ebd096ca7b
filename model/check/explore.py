"""Bounded exhaustive exploration: every state of the model in a small world, breadth first.

A `World` is a few run ids, one policy, a clock that ticks in whole seconds up to a
horizon, and a cleanup worker whose sweep is a step of its own. From the empty store,
`explore` makes every call in every state reached, through `spec.apply` (the one model of
a call), and checks what each step must do and what it reached.

What is tried in each state (`actions`):

- the moves: starts, every transition, heartbeats, appends, prune, worker start/stop,
  the worker's sweep, a clock tick;
- a reading one second behind a store that has read `now` (a heartbeat of each active
  run, a get of each terminal one, a listing): the mark clamps it, so `updated_at` never
  decreases (I8) and no expired run is seen again (I5);
- `close()`. A path ends there: a closed store is asked every call once, each to be
  refused with StoreClosed (L1) or answered as after close, nothing changed.

Two kinds of call cannot depend on the state, by the order of checks (arguments before
the clock, the clock before any rule), so they are tried in one representative state
(`_representative`, right after `start("a")`) rather than in all: one bad call per kind
of call and argument (R1-R3, L2, L3, W1), refused with InvalidArgument naming the rule,
nothing changed, not even the mark; and a NaN reading for each kind of call that reads
the clock, refused with ClockError, nothing changed.

What is checked:

- always: the numbered invariants on every state and every step, and the eventual
  properties E1, E2 (`runbound.model.invariants.overdue_violations`). An eventual property needs
  fairness: the worker is *urgent*, the clock cannot tick past the moment its next sweep
  is due, so every path in which time passes gives it its turn; with time explicit,
  "eventually, within a deadline" is then a property of each state (bounded response);
- sometimes (Stateright's term, `SOMETIMES`): a named predicate on a step that must hold
  for at least one step of the world -- each error class, an eviction by the cap, an
  expiry, a lease reap, every edge of the transition table, a worker sweep that met a
  deadline the next tick would have passed, a clamped reading that mattered. A world too
  small to reach one checks nothing there: `Result.unreached` names it, and `runbound
  explore` fails ("vacuous") unless told `--allow-unreached NAME`.

Breadth first, so the first violation found has the shortest path to it. Two reductions,
both exact (they merge states with the same future): symmetry over run ids (ids are
interchangeable, so a state is keyed by its runs in start order, not by their names, and
a start tries one unused id, not all of them) and abstraction of what no rule reads
(`seq` beyond its order, `created_at`, the clock's high-water mark, and a closed store's
clock and worker: L1 comes first). The mark is left out because no reading the explorer
makes can fall below it unnoticed: moves read the node's own time, which is never behind
the mark, and a reading that goes back is made only after the store has read `now`
(`step`), so it is clamped to exactly `now` whatever the mark was before. (A reading
behind `now` but not behind the mark is no fault at all: it is time that passed more
slowly, which the ticks already cover.) `orbit_size` counts how many named states each
key stands for, so the reduction factor is exact; a test explores without symmetry and
finds that many.

`replay_paths` runs the path to every state up to a depth, and every call from it, against
a real store through the stateful check's machine: exhaustive conformance for tiny worlds.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from runbound.model import spec
from runbound.model.calls import Step, policy_to_json
from runbound.model.check.counterexample import Counterexample, Differed
from runbound.model.check.replay import replay
from runbound.model.clock import VirtualClock
from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    IllegalTransition,
    InvalidArgument,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.invariants import (
    Observation,
    Violation,
    lease_violations,
    overdue_violations,
    state_violations,
    step_violations,
    visibility_violations,
)
from runbound.model.lifecycle import TRANSITIONS, Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.protocol import StoreFactory
from runbound.model.records import Page, Run, SweepResult

Key = tuple[Any, ...]
#: a call as the model takes it: (state, op, args, clock reading) -> (state, result or the
#: error it was refused with); `spec.apply`, or a planted bug's version of it
Call = Callable[[spec.ModelState, str, tuple[Any, ...], float],
                tuple[spec.ModelState, object]]

RUN_NAMES = "abcdefgh"


class Action(NamedTuple):
    """One step of a path: a call (or `tick`, or `worker`: the worker's sweep)."""

    op: str
    args: tuple[Any, ...] = ()
    #: the clock reading it is made at: "" the node's time; "back" one second behind a
    #: store that has read the node's time (C1 clamps it); "nan" a NaN reading (C1 refuses)
    reading: str = ""


#: one bad call per kind of call and argument, each with the rule it breaks (tried in
#: `_representative`, where run "a" is retained and active, so only the argument is bad)
BAD_CALLS: dict[Action, str] = {
    Action("start", ("",)): "R1",
    Action("heartbeat", (None,)): "R1",
    Action("get", (7,)): "R1",
    Action("transition", ("a", "paused")): "R2",
    Action("append_event", ("a", 12)): "R3",
    Action("list_runs", (0,)): "L2",
    Action("list_runs", (1, "paused")): "R2",
    Action("list_runs", (1, None, "\u00b2")): "L3",
    Action("start_cleanup_worker", (0,)): "W1",
}


def _policy() -> Policy:
    return Policy(ttl=0.5, max_terminal=1, max_active=2, max_events_per_run=1,
                  stale_after=0.5, sweep=SweepMode.BACKGROUND)


@dataclass(frozen=True)
class World:
    """What is explored. Small on purpose: the state space grows exponentially in each.

    The default reaches every sometimes-property and catches every planted bug: three
    ids against `max_active=2`, so a start can be refused and an active run can sit
    beside one being finished (what the cap must not evict); `max_terminal=1`, so a
    second terminal run evicts the first; a TTL and a lease of half a tick, so a run
    that ends (or goes quiet) at one tick is expired (or stale) at the next, and the
    worker's deadline for it (E1, E2: one interval later) falls within two ticks."""

    ids: int = 3
    policy: Policy = field(default_factory=_policy)
    #: the clock ticks 0, 1, ..., horizon seconds
    horizon: int = 2
    #: the worker sweeps at least once per `interval` seconds while it runs
    interval: int = 1
    #: appends tried per run, in all (bounds the ring buffer's drop counter)
    events: int = 1
    symmetry: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.ids <= len(RUN_NAMES):
            raise ValueError(f"ids must be 1..{len(RUN_NAMES)}, got {self.ids}")
        if self.horizon < 0 or self.interval < 1 or self.events < 0:
            raise ValueError("horizon and events must be >= 0, interval >= 1")

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(RUN_NAMES[: self.ids])


@dataclass(frozen=True, slots=True)
class Node:
    model: spec.ModelState
    now: float = 0.0
    #: when the worker's next sweep is due (the clock cannot pass it); None: no worker
    due: float | None = None
    #: when the running worker was started
    since: float | None = None


class Transition(NamedTuple):
    """One step taken: the node it left, the action, the node it reached, and the call's
    result or the error it was refused with."""

    before: Node
    action: Action
    after: Node
    outcome: object
    refused: bool
    #: True iff the step changed what a rule judges: the runs, the worker, closing
    changed: bool


# --- sometimes: what a world must reach, or it checked nothing there --------------------

def _refused_with(cls: type[RunboundError]) -> Callable[[Transition, World], bool]:
    return lambda t, w: type(t.outcome) is cls


def _gone(t: Transition) -> Iterator[Run]:
    """Runs retained before an accepted step and not after (a start that replaces a
    terminal run keeps its id, so replacing is not going)."""
    if t.refused or not t.changed:
        return
    kept = {r.run_id for r in t.after.model.runs}
    yield from (r for r in t.before.model.runs if r.run_id not in kept)


def _unknown_by(rule: str) -> Callable[[Transition, World], bool]:
    return lambda t, w: type(t.outcome) is UnknownRun and t.outcome.rule.startswith(rule)


def _evicted(t: Transition, w: World) -> bool:
    return any(not spec.expired(r, w.policy, t.before.now) for r in _gone(t))


def _evicted_beside_active(t: Transition, w: World) -> bool:
    """The cap evicted a run while another run stayed active through the step (the same
    run: its `seq`, not a new start under its id): where I4 decides something."""
    if not _evicted(t, w):
        return False
    active = {(r.run_id, r.seq) for r in t.before.model.runs if r.active}
    return any(r.active and (r.run_id, r.seq) in active for r in t.after.model.runs)


def _expired(t: Transition, w: World) -> bool:
    return any(spec.expired(r, w.policy, t.before.now) for r in _gone(t))


def _moved(t: Transition) -> Iterator[tuple[Run, Run]]:
    """(before, after) of each run an accepted step changed the status of."""
    if t.refused or not t.changed:
        return
    old = {r.run_id: r for r in t.before.model.runs}
    for run in t.after.model.runs:
        was = old.get(run.run_id)
        if was is not None and was.status is not run.status:
            yield was, run


def _reaped(t: Transition, w: World) -> bool:
    own = t.action.args[0] if t.action.op == "transition" else None
    return any(was.active and run.status is Status.FAILED and run.run_id != own
               for was, run in _moved(t))


def _edge(a: Status, b: Status) -> Callable[[Transition, World], bool]:
    return lambda t, w: any(was.status is a and run.status is b for was, run in _moved(t))


def _back_hides_expired(t: Transition, w: World) -> bool:
    """A get one second back refused for a run visible at that reading: the mark hid it."""
    if t.action.reading != "back" or t.action.op != "get" or type(t.outcome) is not UnknownRun:
        return False
    run = spec.find(t.before.model.runs, t.action.args[0])
    return run is not None and not spec.expired(run, w.policy, t.before.now - 1)


def _back_keeps_updated_at(t: Transition, w: World) -> bool:
    """A heartbeat one second back on a run updated at `now`: unclamped, it would have
    moved `updated_at` back."""
    if t.action.reading != "back" or t.action.op != "heartbeat" or t.refused:
        return False
    run = spec.find(t.before.model.runs, t.action.args[0])
    return run is not None and run.updated_at > t.before.now - 1


def _worker_in_time(eventual: str) -> Callable[[Transition, World], bool]:
    """The worker's sweep removed (E1) or reaped (E2) a run whose deadline the next tick
    would pass: a path on which that eventual property decides something."""
    def holds(t: Transition, w: World) -> bool:
        since, policy = t.before.since, w.policy
        if t.action.op != "worker" or since is None or t.before.now >= w.horizon:
            return False
        if eventual == "E1":
            due = [r.terminated_at + policy.ttl for r in _gone(t)
                   if r.terminated_at is not None and policy.ttl is not None]
        else:
            due = [was.updated_at + policy.stale_after for was, run in _moved(t)
                   if was.active and policy.stale_after is not None]
        return any(max(x, since) + w.interval < t.before.now + 1 for x in due)
    return holds


class Sometimes(NamedTuple):
    about: str
    holds: Callable[[Transition, World], bool]


#: name -> what must happen in at least one step of a world that is not vacuous
SOMETIMES: dict[str, Sometimes] = {
    **{cls.__name__: Sometimes(f"a call refused with {cls.__name__}", _refused_with(cls))
       for cls in (RunAlreadyActive, AdmissionRefused, IllegalTransition, NotActive,
                   UnknownRun, StoreClosed, InvalidArgument, ClockError)},
    "V1-absent": Sometimes("a call on a run no store holds (UnknownRun, V1)",
                           _unknown_by("V1")),
    "V2-expired": Sometimes("a call on a run past its TTL (UnknownRun, V2)",
                            _unknown_by("V2")),
    "cap-eviction": Sometimes("a run evicted by max_terminal", _evicted),
    "eviction-beside-active": Sometimes("the cap evicted a run while another stayed "
                                        "active (what I4 judges)", _evicted_beside_active),
    "ttl-expiry": Sometimes("a run dropped past its TTL", _expired),
    "lease-reap": Sometimes("an active run reaped to failed by the lease", _reaped),
    "E1-deadline": Sometimes("the worker dropped an expired run the next tick would have "
                             "found overdue", _worker_in_time("E1")),
    "E2-deadline": Sometimes("the worker reaped a stale run the next tick would have found "
                             "overdue", _worker_in_time("E2")),
    **{f"{a}->{b}": Sometimes(f"a run moved {a} -> {b}", _edge(a, b))
       for a, targets in TRANSITIONS.items() for b in sorted(targets)},
    "back-hides-expired": Sometimes("a reading one second back did not bring back an "
                                    "expired run", _back_hides_expired),
    "back-keeps-updated_at": Sometimes("a heartbeat read one second back kept updated_at "
                                       "where it was", _back_keeps_updated_at),
}


# --- planted bugs: the explorer must find each, with the shortest path -----------------

def _evicts_active(m: spec.ModelState, op: str, a: tuple[Any, ...], now: float
                   ) -> tuple[spec.ModelState, object]:
    """A cap that counts every run and drops the oldest started, active or not."""
    state, run = spec.apply(m, op, a, now)
    cap = state.policy.max_terminal
    if isinstance(run, Run) and run.terminal and cap is not None and len(state.runs) > cap:
        state = replace(state, runs=state.runs[len(state.runs) - cap:])
    return state, run


def _admits_one_more(m: spec.ModelState, op: str, a: tuple[Any, ...], now: float
                     ) -> tuple[spec.ModelState, object]:
    """Admission control off by one."""
    p = m.policy
    loose = replace(p, max_active=None if p.max_active is None else p.max_active + 1)
    state, run = spec.apply(replace(m, policy=loose), op, a, now)
    return replace(state, policy=p), run


def _idle_worker(m: spec.ModelState, op: str, a: tuple[Any, ...], now: float
                 ) -> tuple[spec.ModelState, object]:
    """A worker whose sweep never runs (S1's loop swallowing every failure)."""
    return m, SweepResult()


def _ignores_the_mark(m: spec.ModelState, op: str, a: tuple[Any, ...], now: float
                      ) -> tuple[spec.ModelState, object]:
    """A store that keeps its high-water mark but works at the raw reading."""
    state, result = spec.apply(replace(m, clock=-math.inf), op, a, now)
    return replace(state, clock=max(m.clock, state.clock)), result


PLANTED: dict[str, tuple[str, dict[str, Call]]] = {
    "evicts-active": ("the cap drops the oldest run, active or not", {
        "transition": _evicts_active}),
    "admits-one-more": ("admission control admits max_active + 1", {
        "start": _admits_one_more}),
    "idle-worker": ("the worker's sweep does nothing", {"worker": _idle_worker}),
    "ignores-the-mark": ("a clock that steps back is believed (C1)", {
        op: _ignores_the_mark for op in (*spec.CLOCKED, "worker")}),
}


# --- the search ---------------------------------------------------------------------------

#: the rule errors each call can raise (its own rules: specs/lifecycle.md, "Operations")
_RULE_ERRORS: dict[str, tuple[type[RunboundError], ...]] = {
    "start": (RunAlreadyActive, AdmissionRefused),
    "transition": (UnknownRun, IllegalTransition),
    "heartbeat": (UnknownRun, NotActive),
    "append_event": (UnknownRun, NotActive),
    "get": (UnknownRun,),
}
_TAKE_ARGUMENTS = frozenset({"start", "transition", "heartbeat", "append_event", "get",
                             "list_runs", "start_cleanup_worker"})
#: (call, outcome) pairs the spec allows, for each call the explorer makes: L1, then the
#: arguments, then C1, then the call's own rules, or "ok"
OUTCOMES: frozenset[tuple[str, str]] = frozenset(
    (op, outcome) for op in spec.OPERATIONS
    for outcome in ("ok", *(c.__name__ for c in _RULE_ERRORS.get(op, ())),
                    *(("InvalidArgument",) if op in _TAKE_ARGUMENTS else ()),
                    *(("ClockError",) if op in spec.CLOCKED else ()),
                    *(("StoreClosed",) if op not in spec.AFTER_CLOSE else ())))


@dataclass
class Coverage:
    statuses: set[Status] = field(default_factory=set)
    #: (from, to) status changes taken; the lease sweep's active -> failed included
    edges: set[tuple[Status, Status]] = field(default_factory=set)
    #: (call, "ok" or the error class) -> how often
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def missing_outcomes(self) -> list[tuple[str, str]]:
        """(call, outcome) pairs the spec allows that no step produced."""
        return sorted(OUTCOMES - self.outcomes.keys())


@dataclass
class PathViolation:
    """A property the explored model breaks: the explorer's own account (its actions,
    `show_path`); `Result.counterexample` is the same as the one counterexample type."""

    property: str
    message: str
    #: the calls from the empty store, shortest first found
    path: tuple[Action, ...]


@dataclass
class Result:
    world: World
    states: int = 0
    transitions: int = 0
    depth: int = 0
    seconds: float = 0.0
    #: how many named states the explored keys stand for (== states without symmetry)
    named_states: int = 0
    complete: bool = True
    coverage: Coverage = field(default_factory=Coverage)
    violation: PathViolation | None = None
    #: each sometimes-property reached, with the shortest path to a step that reached it
    reached: dict[str, tuple[Action, ...]] = field(default_factory=dict)

    @property
    def counterexample(self) -> Counterexample | None:
        """The shortest path to the violation, as a program any store can replay (held to
        every invariant: the path is the shortest to any violation)."""
        v = self.violation
        if v is None:
            return None
        return Counterexample.of_program(v.property, program_of(self.world, v.path,
                                                                reads=False),
                                         Differed(v.message), enforce="any")

    @property
    def unreached(self) -> list[str]:
        """Sometimes-properties no step reached: vacuous in this world."""
        return [name for name in SOMETIMES if name not in self.reached]

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else math.inf

    @property
    def reduction(self) -> float:
        return self.named_states / self.states if self.states else 1.0


def key(node: Node, symmetry: bool = True) -> Key:
    """The node up to what no rule reads: runs in start order, by their fields that
    matter, and (without symmetry) their names. Not the clock's mark (see the module's
    docstring)."""
    runs = tuple((r.status, r.updated_at, r.terminated_at, len(r.events), r.dropped_events,
                  *((r.run_id,) if not symmetry else ()))
                 for r in node.model.runs)
    if node.model.closed:  # L1 comes before C1: a closed store never reads its clock
        return (runs, True)
    return (runs, node.model.worker, False, node.now, node.due, node.since)


def orbit_size(node: Node, world: World) -> int:
    """Named states one symmetric key stands for: the ways to name its n runs with
    distinct ids out of `world.ids` (runs are told apart by start order)."""
    return math.perm(world.ids, len(node.model.runs)) if world.symmetry else 1


def actions(node: Node, world: World) -> Iterator[Action]:
    """Every call tried in `node`. Ids: the retained ones, and one unused id -- or all of
    them without symmetry."""
    if node.model.closed:
        yield from _after_close(world)
        return
    runs = node.model.runs
    retained = [r.run_id for r in runs]
    unused = [i for i in world.run_ids if i not in retained]
    for rid in retained + unused[: 1 if world.symmetry else None]:
        yield Action("start", (rid,))
    if unused:  # a run no store holds: V1, and a store that upserts is caught in replay
        yield Action("heartbeat", (unused[0],))
    for run in runs:
        rid = run.run_id
        for status in Status:
            yield Action("transition", (rid, status))
        yield Action("heartbeat", (rid,))
        if len(run.events) + run.dropped_events < world.events:
            yield Action("append_event", (rid, "e"))
    yield Action("prune")
    if node.model.worker:
        yield Action("worker")
    # both in either state: a second start and a second stop must change nothing
    yield Action("start_cleanup_worker", (float(world.interval),))
    yield Action("stop_cleanup_worker")
    if node.now < world.horizon and (node.due is None or node.now < node.due):
        yield Action("tick")
    # the checks: each changes nothing, or ends the path
    for run in runs:  # the clock goes back: an active run's lease, a terminal run's TTL
        yield Action("heartbeat" if run.active else "get", (run.run_id,), "back")
    yield Action("list_runs", (world.ids + 1,), "back")
    if _representative(node):
        yield Action("len")
        yield Action("snapshot")
        yield from _clocked_once(world, "nan")
        yield from BAD_CALLS
    yield Action("close")


def _representative(node: Node) -> bool:
    """The one state where the checks that cannot depend on the state are made: a bad
    argument is refused before the clock is read, a NaN reading before any rule looks
    at the runs. Right after start("a"): a run to name, active, so a rule could apply."""
    runs = node.model.runs
    return (len(runs) == 1 and runs[0].run_id == RUN_NAMES[0] and node.now == 0
            and runs[0].status is Status.PENDING and not runs[0].events
            and not node.model.worker)


def _clocked_once(world: World, reading: str) -> Iterator[Action]:
    """One call of each kind that reads the clock; the first id, retained or not (the
    clock is read before any rule looks it up)."""
    rid = world.run_ids[0]
    yield Action("start", (rid,), reading)
    yield Action("transition", (rid, Status.RUNNING), reading)
    yield Action("heartbeat", (rid,), reading)
    yield Action("append_event", (rid, "e"), reading)
    yield Action("get", (rid,), reading)
    yield Action("list_runs", (1,), reading)
    yield Action("prune", (), reading)


def _after_close(world: World) -> Iterator[Action]:
    """What a closed store is asked: every call once (StoreClosed, L1 before the
    arguments and the clock), and the three it still answers."""
    yield from _clocked_once(world, "")
    yield Action("len")
    yield Action("snapshot")
    yield Action("start_cleanup_worker", (float(world.interval),))
    yield Action("start", ("",))
    yield Action("prune", (), "nan")
    yield Action("stop_cleanup_worker")
    yield Action("cleanup_workers_alive")
    yield Action("close")


def step(node: Node, action: Action, world: World, calls: Mapping[str, Call]
         ) -> tuple[Node, object]:
    """`action` in `node`: the next node, and the call's result or the error it was
    refused with (the model is pure: a refusal leaves the state it got, its clock's mark
    raised at most)."""
    op, args, reading = action
    if op == "tick":
        return Node(node.model, node.now + 1, node.due, node.since), None
    model, now = node.model, node.now
    if reading == "back":
        # the store has read `now` (as a read at `now` leaves it), and the clock goes back
        model, _ = spec.at(model, now)
        now -= 1
    elif reading == "nan":
        now = math.nan
    # the worker's sweep is the model's `prune` (unless a planted bug says otherwise)
    model, outcome = calls[op](model, "prune" if op == "worker" else op, args, now)
    # (Nodes are built whole, not by `dataclasses.replace`: this runs a million times.)
    due, since = node.due, node.since
    if isinstance(outcome, RunboundError):
        pass
    elif op == "worker":
        due = node.now + world.interval
    elif op == "start_cleanup_worker" and outcome is True:
        due, since = node.now + world.interval, node.now
    elif node.model.worker and not model.worker:  # stopped, or closed
        due = since = None
    return Node(model, node.now, due, since), outcome


def check_step(t: Transition, world: World) -> list[Violation]:
    """Every always-property of a step (the state it reaches is `check_state`'s)."""
    before, (op, args, reading), after = t.before, t.action, t.after
    if op == "tick":
        return []
    if before.model.closed:
        return _closed_violations(t)
    if reading == "nan":
        if type(t.outcome) is not ClockError or after.model != before.model:
            return [("C1", f"{show_action(t.action)}: {_shown(t.outcome)}, where a NaN "
                           "reading must be refused with ClockError, nothing changed")]
        return []
    rule = BAD_CALLS.get(t.action) if _representative(before) else None
    if rule is not None:
        if (type(t.outcome) is not InvalidArgument or rule not in str(t.outcome)
                or after.model != before.model):
            return [(rule, f"{show_action(t.action)}: {_shown(t.outcome)}, where it must "
                           f"be refused with InvalidArgument ({rule}), nothing changed")]
        return []
    found: list[Violation] = []
    if t.changed:  # else the runs and the worker are as they were (I10 holds)
        found += step_violations(Observation.of(before.model), Observation.of(after.model),
                                 op=op, args=args, refused=t.refused, policy=world.policy,
                                 now=before.now)
    if t.refused:
        return found
    if op == "prune":  # I15 judges the explicit sweep; the worker's is E2's business
        found += lease_violations(after.model.runs, world.policy, before.now)
    elif op in ("get", "list_runs"):
        # what a read returns is judged at the latest time the store has seen
        shown = t.outcome.runs if isinstance(t.outcome, Page) else (t.outcome,)
        found += visibility_violations((r for r in shown if isinstance(r, Run)),
                                       world.policy, before.now)
    return found


def check_state(node: Node, world: World) -> list[Violation]:
    """Every always-property of a state, E1 and E2 included. Made once per key: the key
    holds everything these read."""
    found = state_violations(Observation.of(node.model), world.policy)
    if node.since is not None:
        found += overdue_violations(node.model.runs, world.policy, node.since,
                                    world.interval, node.now)
    return found


def _closed_violations(t: Transition) -> list[Violation]:
    op = t.action.op
    expected: object = {"stop_cleanup_worker": False, "cleanup_workers_alive": 0,
                        "close": None}.get(op, StoreClosed)
    ok = (type(t.outcome) is StoreClosed if expected is StoreClosed
          else t.outcome == expected and not t.refused)
    if ok and t.after.model == t.before.model:
        return []
    want = "StoreClosed" if expected is StoreClosed else repr(expected)
    return [("L1", f"after close(), {show_action(t.action)} gave {_shown(t.outcome)} "
                   f"(must be {want}, nothing changed)")]


#: how many states (or replayed programs) between two calls of a search's `progress`
PROGRESS_EVERY = 500
#: `progress(states, depth)`: how far a search has come (states reached, deepest level)
Progress = Callable[[int, int], None]


def explore(world: World, *, plant: str | None = None, max_states: int = 2_000_000,
            max_depth: int | None = None,
            visit: Callable[[Node, int, tuple[Action, ...]], None] | None = None,
            progress: Progress | None = None) -> Result:
    """Breadth-first search of `world`; stops at the first violation (its path is a
    shortest one), at `max_states` or at `max_depth` (then `complete` is False).
    `visit(node, depth, path)` sees each state reached, with its shortest path;
    `progress(states, depth)` is called every `PROGRESS_EVERY` states or so."""
    calls: dict[str, Call] = {op: spec.apply for op in (*spec.OPERATIONS, "worker")}
    if plant is not None:
        calls.update(PLANTED[plant][1])
    result = Result(world)
    cov = result.coverage
    pending = dict(SOMETIMES)
    root = Node(spec.initial(world.policy))
    root_key = key(root, world.symmetry)
    parents: dict[Key, tuple[Key, Action] | None] = {root_key: None}
    frontier: deque[tuple[Node, Key, int]] = deque([(root, root_key, 0)])
    result.named_states = orbit_size(root, world)
    started = time.perf_counter()
    report_at = PROGRESS_EVERY
    while frontier:
        node, node_key, depth = frontier.popleft()
        if progress is not None and len(parents) >= report_at:  # per node, not per state
            progress(len(parents), result.depth)
            report_at = len(parents) + PROGRESS_EVERY
        if visit is not None:
            visit(node, depth, _path(parents, node_key))
        if max_depth is not None and depth >= max_depth:
            result.complete = False
            continue
        for action in actions(node, world):
            nxt, outcome = step(node, action, world, calls)
            result.transitions += 1
            refused = isinstance(outcome, RunboundError)
            m, n = nxt.model, node.model
            t = Transition(node, action, nxt, outcome, refused,
                           m.runs is not n.runs or m.worker is not n.worker
                           or m.closed is not n.closed)
            _cover(cov, t)
            if pending:
                for name in [n for n, s in pending.items() if s.holds(t, world)]:
                    del pending[name]
                    result.reached[name] = (*_path(parents, node_key), action)
            found = check_step(t, world)
            if found:
                prop, message = found[0]
                path = (*_path(parents, node_key), action)
                result.violation = PathViolation(prop, message, path)
                return _done(result, parents, started)
            if refused or (not t.changed and nxt.due == node.due and nxt.now == node.now):
                continue  # checked to have changed nothing: no new state
            k = key(nxt, world.symmetry)
            if k in parents:
                continue
            parents[k] = (node_key, action)
            found = check_state(nxt, world)
            if found:
                prop, message = found[0]
                result.violation = PathViolation(prop, message, _path(parents, k))
                return _done(result, parents, started)
            result.named_states += orbit_size(nxt, world)
            result.depth = max(result.depth, depth + 1)
            if len(parents) >= max_states:
                result.complete = False
                return _done(result, parents, started)
            frontier.append((nxt, k, depth + 1))
    return _done(result, parents, started)


def _done(result: Result, parents: dict[Key, Any], started: float) -> Result:
    result.states = len(parents)
    result.seconds = time.perf_counter() - started
    return result


def _cover(cov: Coverage, t: Transition) -> None:
    cov.outcomes[(t.action.op, type(t.outcome).__name__ if t.refused else "ok")] += 1
    if t.changed and not t.refused:
        for was, run in _moved(t):
            if t.action.op != "start":
                cov.edges.add((was.status, run.status))
        cov.statuses.update(r.status for r in t.after.model.runs)


def _path(parents: Mapping[Key, tuple[Key, Action] | None], k: Key) -> tuple[Action, ...]:
    steps: list[Action] = []
    link = parents[k]
    while link is not None:
        k, action = link
        steps.append(action)
        link = parents[k]
    return tuple(reversed(steps))


# --- exhaustive conformance of a real store ---------------------------------------------

#: where the machine's clock starts (it makes a new VirtualClock): tick n is this + n
EPOCH = VirtualClock().time
#: the store's own worker is started with this interval, so it never sweeps within a
#: replayed path: the explorer's worker steps are replayed as `prune()`
STORE_INTERVAL = 3600.0


def program_of(world: World, path: tuple[Action, ...], *, reads: bool = True) -> list[Step]:
    """`path` as a program for `runbound.model.check.replay`: the worker's sweep is the store's
    `prune()`, a tick is a clock advance, a reading back or NaN is a clock fault around
    its call. `reads` appends a get of every id and a listing, so what is visible is
    compared too."""
    program: list[Step] = [{"op": "setup", "policy": policy_to_json(world.policy),
                            "ids": list(world.run_ids)}]
    now = 0
    for op, args, reading in path:
        if op == "tick":
            now += 1
            program.append({"op": "advance_clock", "args": [1.0]})
            continue
        if reading == "back":  # the store reads `now`, then the clock goes back
            program.append({"op": "list_runs", "args": [1]})
        if reading:
            fault = EPOCH + now - 1 if reading == "back" else math.nan
            program.append({"op": "clock_fault", "args": [fault]})
        if op == "worker":
            program.append({"op": "prune", "args": []})
        elif op == "start_cleanup_worker" and args and args[0] == float(world.interval):
            program.append({"op": op, "args": [STORE_INTERVAL]})
        elif op == "stop_cleanup_worker":
            program.append({"op": op, "args": [], "store_args": [10.0]})
        else:
            program.append({"op": op, "args": [a.value if isinstance(a, Status) else a
                                               for a in args]})
        if reading:
            program.append({"op": "clock_fault", "args": [None]})
    if reads:
        program += [{"op": "get", "args": [rid]} for rid in world.run_ids]
        program.append({"op": "list_runs", "args": [world.ids + 1]})
    return program


@dataclass
class ReplayResult:
    programs: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failure: tuple[str, list[Step]] | None = None


def replay_paths(world: World, factory: StoreFactory, depth: int,
                 capabilities: Any = None, progress: Progress | None = None
                 ) -> ReplayResult:
    """Replay, against stores `factory` builds, the shortest path to every state within
    `depth` calls followed by every call from it; stop at the first violation. Paths with
    a call the store's `capabilities` lack are left out (counted in `skipped`).
    `progress(programs, level)` is called every `PROGRESS_EVERY` programs replayed."""
    out = ReplayResult()
    started = time.perf_counter()

    def can(path: tuple[Action, ...]) -> bool:
        return capabilities is None or all(
            capabilities.allows(op) for op, _, _ in path)

    def visit(node: Node, level: int, path: tuple[Action, ...]) -> None:
        if out.failure is not None or level >= depth:
            return
        for action in actions(node, world):
            full = (*path, action)
            if not can(full):
                out.skipped += 1
                continue
            program = program_of(world, full)
            out.programs += 1
            if progress is not None and out.programs % PROGRESS_EVERY == 0:
                progress(out.programs, level + 1)
            violation = replay(factory, program, None, capabilities)
            if violation is not None:
                out.failure = (str(violation), program)
                return

    explore(world, max_depth=depth, visit=visit)
    out.seconds = time.perf_counter() - started
    return out


def show_action(action: Action) -> str:
    op, args, reading = action
    if op == "worker":
        return "worker sweeps"
    text = f"{op}({', '.join(a.value if isinstance(a, Status) else repr(a) for a in args)})"
    return {"back": f"{text}, the clock read 1s back", "nan": f"{text}, the clock read NaN"
            }.get(reading, text)


def show_path(path: tuple[Action, ...]) -> list[str]:
    lines, now = [], 0
    for action in path:
        if action.op == "tick":
            now += 1
            lines.append(f"clock -> {now}")
        else:
            lines.append(show_action(action))
    return lines


def _shown(value: object) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}({value})"
    return repr(value)
