"""Bounded exhaustive exploration: every state of the model in a small world, breadth first.

A `World` is a few run ids, one policy, a clock that ticks in whole seconds up to a
horizon, and a cleanup worker whose sweep is a step of its own. From the empty store,
`explore` applies every call to every state reached (starts, every transition, heartbeats,
appends, prune, worker start/stop, the worker's sweep, a clock tick), checks the numbered
invariants on every state and every step ("always"), and two eventual properties:

- E1: with the worker running, a terminal run is gone at most one interval after its TTL
  ran out (or after the worker started, if later);
- E2: with the worker running, a stale active run is reaped at most one interval after
  its lease ran out (or after the worker started).

An eventual property needs fairness: here the worker is *urgent*, the clock cannot tick
past the moment its next sweep is due, so every path in which time passes gives it its
turn. With time explicit, "eventually, within a deadline" is then a property of each state
(bounded response), checked like any other, and a violation has a finite shortest path.

Breadth first, so the first violation found has the shortest path to it. Two reductions,
both exact (they merge states with the same future): symmetry over run ids (ids are
interchangeable, so a state is keyed by its runs in start order, not by their names, and
a start tries one unused id, not all of them) and abstraction of values no rule reads
(`seq` numbers beyond their order, `created_at`, the model's own clock record).
`orbit_size` counts how many named states each key stands for, so the reduction factor is
exact; a test explores without symmetry and finds that many.

`replay_paths` runs the path to every state up to a depth, and every call from it, against
a real store through the stateful check's lockstep: exhaustive conformance for tiny worlds.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from model import spec
from model.errors import RunboundError
from model.invariants import (
    Observation,
    Violation,
    lease_violations,
    state_violations,
    step_violations,
)
from model.lifecycle import Status
from model.policy import Policy, SweepMode
from model.protocol import StoreFactory
from model.stateful import IDLE_INTERVAL, MODEL_CALLS, ModelCall, policy_to_json

Action = tuple[str, tuple[Any, ...]]
Key = tuple[Any, ...]

RUN_NAMES = "abcdefgh"


@dataclass(frozen=True)
class World:
    """What is explored. Small on purpose: the state space grows exponentially in each."""

    ids: int = 2
    policy: Policy = field(default_factory=lambda: Policy(
        ttl=2.0, max_terminal=1, max_events_per_run=1, stale_after=2.0,
        sweep=SweepMode.BACKGROUND, max_active=2))
    #: the clock ticks 0, 1, ..., horizon seconds
    horizon: int = 4
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


EVENTUAL = {
    "E1": "with the worker running, a terminal run is gone within its TTL plus one interval",
    "E2": "with the worker running, a stale active run is reaped within one interval",
}  # stated in specs/invariants.md, "Eventual properties"


def overdue(node: Node, world: World) -> list[Violation]:
    """E1 and E2 in `node`: what the worker should have removed or reaped by now."""
    if node.since is None:
        return []
    policy, out = world.policy, []
    for run in node.model.runs:
        if run.terminated_at is not None and policy.ttl is not None:
            deadline = max(run.terminated_at + policy.ttl, node.since) + world.interval
            if node.now > deadline:
                out.append(("E1", f"run {run.run_id!r} expired at "
                                  f"{run.terminated_at + policy.ttl:g}, still retained at "
                                  f"{node.now:g} (worker every {world.interval}s)"))
        elif run.active and policy.stale_after is not None:
            deadline = max(run.updated_at + policy.stale_after, node.since) + world.interval
            if node.now > deadline:
                out.append(("E2", f"run {run.run_id!r} stale since "
                                  f"{run.updated_at + policy.stale_after:g}, still {run.status}"
                                  f" at {node.now:g} (worker every {world.interval}s)"))
    return out


# --- planted bugs: the explorer must find each, with the shortest path -----------------

def _evicts_active(m: spec.ModelState, now: float, a: tuple[Any, ...]
                   ) -> tuple[spec.ModelState, Any]:
    """A cap that counts every run and drops the oldest started, active or not."""
    state, run = spec.transition(m, a[0], a[1], now)
    cap = state.policy.max_terminal
    if run.terminal and cap is not None and len(state.runs) > cap:
        state = replace(state, runs=state.runs[len(state.runs) - cap:])
    return state, run


def _admits_one_more(m: spec.ModelState, now: float, a: tuple[Any, ...]
                     ) -> tuple[spec.ModelState, Any]:
    """Admission control off by one."""
    p = m.policy
    loose = replace(p, max_active=None if p.max_active is None else p.max_active + 1)
    state, run = spec.start(replace(m, policy=loose), a[0], now)
    return replace(state, policy=p), run


def _idle_worker(m: spec.ModelState, now: float, a: tuple[Any, ...]
                 ) -> tuple[spec.ModelState, Any]:
    """A worker whose sweep never runs (S1's loop swallowing every failure)."""
    return m, None


PLANTED: dict[str, tuple[str, dict[str, ModelCall]]] = {
    "evicts-active": ("the cap drops the oldest run, active or not", {
        "transition": _evicts_active}),
    "admits-one-more": ("admission control admits max_active + 1", {
        "start": _admits_one_more}),
    "idle-worker": ("the worker's sweep does nothing", {"worker": _idle_worker}),
}


# --- the search ---------------------------------------------------------------------------

@dataclass
class Coverage:
    statuses: set[Status] = field(default_factory=set)
    #: (from, to) status changes taken; the lease sweep's active -> failed included
    edges: set[tuple[Status, Status]] = field(default_factory=set)
    #: (call, "ok" or the error class) -> how often
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class Counterexample:
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
    violation: Counterexample | None = None

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else math.inf

    @property
    def reduction(self) -> float:
        return self.named_states / self.states if self.states else 1.0


def key(node: Node, symmetry: bool = True) -> Key:
    """The node up to what no rule reads: runs in start order, by their fields that
    matter, and (without symmetry) their names."""
    runs = tuple((r.status, r.updated_at, r.terminated_at, len(r.events), r.dropped_events,
                  *((r.run_id,) if not symmetry else ()))
                 for r in node.model.runs)
    return (runs, node.model.worker, node.now, node.due, node.since)


def orbit_size(node: Node, world: World) -> int:
    """Named states one symmetric key stands for: the ways to name its n runs with
    distinct ids out of `world.ids` (runs are told apart by start order)."""
    return math.perm(world.ids, len(node.model.runs)) if world.symmetry else 1


def actions(node: Node, world: World) -> Iterator[Action]:
    """Every call tried in `node`. Ids: the retained ones, and one unused id -- or all of
    them without symmetry. Reads change nothing, so they are left to `replay_paths`."""
    retained = [r.run_id for r in node.model.runs]
    unused = [i for i in world.run_ids if i not in retained]
    for rid in retained + unused[: 1 if world.symmetry else None]:
        yield ("start", (rid,))
    for run in node.model.runs:
        rid = run.run_id
        for status in Status:
            yield ("transition", (rid, status))
        yield ("heartbeat", (rid,))
        if len(run.events) + run.dropped_events < world.events:
            yield ("append_event", (rid, "e"))
    yield ("prune", ())
    if node.model.worker:
        yield ("worker", ())
    # both in either state: a second start and a second stop must change nothing
    yield ("start_cleanup_worker", (IDLE_INTERVAL,))
    yield ("stop_cleanup_worker", ())
    if node.now < world.horizon and (node.due is None or node.now < node.due):
        yield ("tick", ())


def step(node: Node, action: Action, world: World, calls: Mapping[str, ModelCall]
         ) -> tuple[Node, RunboundError | None]:
    """`action` in `node`: the next node, and the error if the model refused the call."""
    op, args = action
    if op == "tick":
        return Node(node.model, node.now + 1, node.due, node.since), None
    try:
        model, _ = calls[op](node.model, node.now, args)
    except RunboundError as error:
        return node, error
    if op == "worker":
        return replace(node, model=model, due=node.now + world.interval), None
    if op == "start_cleanup_worker" and not node.model.worker:
        return replace(node, model=model, due=node.now + world.interval, since=node.now), None
    if op == "stop_cleanup_worker" and node.model.worker:
        return replace(node, model=model, due=None, since=None), None
    return replace(node, model=model), None


def check_step(before: Node, action: Action, after: Node, world: World) -> list[Violation]:
    """Every always-property of an accepted step and of the state it leads to, then E1
    and E2. (A refused call needs none: the model is pure, so it changed nothing.)"""
    op, args = action
    found: list[Violation] = []
    if op != "tick":
        obs = Observation.of(after.model)
        found += state_violations(obs, world.policy)
        found += step_violations(Observation.of(before.model), obs, op=op, args=args,
                                 refused=False, policy=world.policy, now=before.now)
    if op == "prune":
        found += lease_violations(after.model.runs, world.policy, before.now)
    return found + overdue(after, world)


def explore(world: World, *, plant: str | None = None, max_states: int = 2_000_000,
            max_depth: int | None = None,
            visit: Callable[[Node, int, tuple[Action, ...]], None] | None = None) -> Result:
    """Breadth-first search of `world`; stops at the first violation (its path is a
    shortest one), at `max_states` or at `max_depth` (then `complete` is False).
    `visit(node, depth, path)` sees each state reached, with its shortest path."""
    # the worker's sweep is the model's sweep (unless a planted bug says otherwise)
    calls: dict[str, ModelCall] = {**MODEL_CALLS, "worker": MODEL_CALLS["prune"],
                                   **(PLANTED[plant][1] if plant is not None else {})}
    result = Result(world)
    cov = result.coverage
    root = Node(spec.initial(world.policy))
    root_key = key(root, world.symmetry)
    parents: dict[Key, tuple[Key, Action] | None] = {root_key: None}
    frontier: deque[tuple[Node, Key, int]] = deque([(root, root_key, 0)])
    result.named_states = orbit_size(root, world)
    started = time.perf_counter()
    while frontier:
        node, node_key, depth = frontier.popleft()
        if visit is not None:
            visit(node, depth, _path(parents, node_key))
        if max_depth is not None and depth >= max_depth:
            result.complete = False
            continue
        for action in actions(node, world):
            nxt, error = step(node, action, world, calls)
            result.transitions += 1
            _cover(cov, node, action, nxt, error)
            if error is not None:
                continue  # the model is pure: a refused call returns the state it got
            found = check_step(node, action, nxt, world)
            if found:
                prop, message = found[0]
                path = (*_path(parents, node_key), action)
                result.violation = Counterexample(prop, message, path)
                return _done(result, parents, started)
            k = key(nxt, world.symmetry)
            if k in parents:
                continue
            parents[k] = (node_key, action)
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


def _cover(cov: Coverage, node: Node, action: Action, nxt: Node,
           error: RunboundError | None) -> None:
    op, _args = action
    cov.outcomes[(op, "ok" if error is None else type(error).__name__)] += 1
    if error is not None or nxt.model is node.model:
        return
    before = {r.run_id: r.status for r in node.model.runs}
    for run in nxt.model.runs:
        cov.statuses.add(run.status)
        was = before.get(run.run_id)
        if was is not None and was is not run.status and op != "start":
            cov.edges.add((was, run.status))


def _path(parents: Mapping[Key, tuple[Key, Action] | None], k: Key) -> tuple[Action, ...]:
    steps: list[Action] = []
    link = parents[k]
    while link is not None:
        k, action = link
        steps.append(action)
        link = parents[k]
    return tuple(reversed(steps))


# --- exhaustive conformance of a real store ---------------------------------------------

def program_of(world: World, path: tuple[Action, ...], *, reads: bool = True
               ) -> list[dict[str, Any]]:
    """`path` as a program for `model.replay`: the worker's sweep is the store's
    `prune()` (its own worker idles, as in the stateful check), a tick is a clock advance.
    `reads` appends a get of every id and a listing, so what is visible is compared too."""
    program: list[dict[str, Any]] = [{"op": "setup", "policy": policy_to_json(world.policy)}]
    for op, args in path:
        if op == "tick":
            program.append({"op": "advance_clock", "args": [1.0]})
        elif op == "worker":
            program.append({"op": "prune", "args": []})
        elif op == "stop_cleanup_worker":
            program.append({"op": op, "args": [], "store_args": [10.0]})
        else:
            program.append({"op": op, "args": [a.value if isinstance(a, Status) else a
                                               for a in args]})
    if reads:
        program += [{"op": "get", "args": [rid]} for rid in world.run_ids]
        program.append({"op": "list_runs", "args": [world.ids + 1]})
    return program


@dataclass
class ReplayResult:
    programs: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failure: tuple[str, list[dict[str, Any]]] | None = None


#: the capability (model.conformance.Capabilities) each call needs
NEEDS = {"start_cleanup_worker": "worker", "stop_cleanup_worker": "worker",
         "worker": "worker", "heartbeat": "heartbeat", "append_event": "events"}


def replay_paths(world: World, factory: StoreFactory, depth: int,
                 capabilities: Any = None) -> ReplayResult:
    """Replay, against stores `factory` builds, the shortest path to every state within
    `depth` calls followed by every call from it; stop at the first violation. Paths with
    a call the store's `capabilities` lack are left out (counted in `skipped`)."""
    from model.replay import replay

    out = ReplayResult()
    started = time.perf_counter()

    def can(path: tuple[Action, ...]) -> bool:
        return capabilities is None or all(
            getattr(capabilities, NEEDS.get(op, ""), True) for op, _ in path)

    def visit(node: Node, level: int, path: tuple[Action, ...]) -> None:
        if out.failure is not None or level >= depth:
            return
        for action in actions(node, world):
            if not can((*path, action)):
                out.skipped += 1
                continue
            program = program_of(world, (*path, action))
            out.programs += 1
            violation = replay(factory, program)
            if violation is not None:
                out.failure = (str(violation), program)
                return

    explore(world, max_depth=depth, visit=visit)
    out.seconds = time.perf_counter() - started
    return out


def show_path(path: tuple[Action, ...]) -> list[str]:
    lines, now = [], 0
    for op, args in path:
        if op == "tick":
            now += 1
            lines.append(f"clock -> {now}")
            continue
        text = ", ".join(a.value if isinstance(a, Status) else repr(a) for a in args)
        lines.append(f"{'worker sweeps' if op == 'worker' else f'{op}({text})'}")
    return lines

