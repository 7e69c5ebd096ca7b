"""The explorer: the default world reaches every sometimes-property and keeps every
property, a world that cannot reach one is reported vacuous, the symmetry reduction is
exact, each planted bug is found by a shortest path (by the default command too), and
paths replayed against a store catch the broken stores and pass the reference ones."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from runbound.cli import PLANTED_BUGS, main
from runbound.model import spec
from runbound.model.check.explore import (
    BAD_CALLS,
    OUTCOMES,
    PLANTED,
    SOMETIMES,
    Action,
    Node,
    Result,
    Transition,
    World,
    actions,
    check_step,
    explore,
    key,
    replay_paths,
    show_path,
    step,
)
from runbound.model.lifecycle import TRANSITIONS, Status
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities
from runbound.model.records import Run
from runbound.reference.broken import CountsOnlyTerminalStore, EvictsActiveStore, TwoWorkersStore
from runbound.reference.memory import MemoryRunStore
from runbound.reference.sqlite import on_disk

#: one tick, so replays stay short; it still refuses starts and evicts
WIDE = World(ids=3, horizon=1)
#: the default policy without admission control: a start is never refused
NO_ADMISSION = '{"ttl": 0.5, "max_terminal": 1, "max_events_per_run": 1, "stale_after": 0.5}'
#: the shortest path to each planted bug in the default world, as `show_path` prints it
SHORTEST = {
    "evicts-active": ("I4", ["start('a')", "start('b')", "transition('b', failed)"]),
    "admits-one-more": ("I3", ["start('a')", "start('b')", "start('c')"]),
    "idle-worker": ("E2", ["start('a')", "start_cleanup_worker(1.0)", "clock -> 1",
                           "worker sweeps", "clock -> 2"]),
    "ignores-the-mark": ("I8", ["start('a')", "heartbeat('a'), the clock read 1s back"]),
}


@pytest.fixture(scope="module")
def default() -> Result:
    return explore(World())


def test_default_world_reaches_every_sometimes_property(default: Result) -> None:
    """Complete, no violation, and nothing vacuous: every sometimes-property, every table
    edge, every status and every (call, outcome) pair the spec allows occurred."""
    assert default.complete and default.violation is None
    assert default.unreached == [] and set(default.reached) == set(SOMETIMES)
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert default.coverage.edges == table
    assert default.coverage.statuses == set(Status)
    assert default.coverage.missing_outcomes == []
    assert default.states > 10_000 and default.transitions > 10 * default.states
    # each witness is a path that really leads to a step reaching the property
    assert show_path(default.reached["AdmissionRefused"]) == [
        "start('a')", "start('b')", "start('c')"]
    assert default.reached["StoreClosed"][-2:][0] == Action("close")


def test_eventual_property_holds_only_with_a_fair_worker(default: Result) -> None:
    """E1/E2 are about the worker: the correct model with a worker never fails them, and
    the default world lets time pass a deadline the worker had to meet."""
    assert default.violation is None
    assert {"E1-deadline", "E2-deadline"} <= default.reached.keys()
    idle = explore(World(), plant="idle-worker").violation
    assert idle is not None and idle.property == "E2"


def test_a_narrow_world_is_vacuous_where_it_cannot_reach() -> None:
    """Without admission control no start is refused; with one tick no worker deadline
    passes: the explorer names what it never reached, and what the world can reach is
    still reached."""
    narrow = explore(World(ids=2, horizon=1, policy=Policy(
        ttl=0.5, max_terminal=1, max_events_per_run=1, stale_after=0.5)))
    assert narrow.violation is None
    assert narrow.unreached == ["AdmissionRefused", "eviction-beside-active", "E1-deadline",
                                "E2-deadline"]
    assert ("start", "AdmissionRefused") in narrow.coverage.missing_outcomes


def test_a_world_where_the_cap_never_meets_an_active_run_lets_evicts_active_escape() -> None:
    """Two ids and max_active=1 reach every error class, edge, eviction and expiry, yet an
    active run never sits beside one being evicted: that world says so, and indeed a cap
    that evicts active runs passes it. (Why the default has three ids.)"""
    world = World(ids=2, policy=Policy(ttl=0.5, max_terminal=1, max_active=1,
                                       max_events_per_run=1, stale_after=0.5))
    assert explore(world).unreached == ["eviction-beside-active"]
    assert explore(world, plant="evicts-active").violation is None


def test_cli_fails_a_vacuous_world_unless_told(capsys: pytest.CaptureFixture[str]) -> None:
    narrow = ["explore", "--ids", "2", "--horizon", "1", "--events", "0", "--policy",
              NO_ADMISSION]
    assert main(narrow) == 1
    out = capsys.readouterr().out
    assert "vacuous: never reached AdmissionRefused" in out
    assert out.splitlines()[-1].startswith("vacuous: this world checks nothing")
    allowed = [f"--allow-unreached={n}" for n in ("AdmissionRefused", "E1-deadline",
                                                  "eviction-beside-active")]
    assert main([*narrow, *allowed]) == 1  # E2-deadline is still unreached
    assert main([*narrow, *allowed, "--allow-unreached", "E2-deadline"]) == 0
    out = capsys.readouterr().out
    assert "AdmissionRefused: a call refused with AdmissionRefused (allowed)" in out


def test_symmetry_reduction_is_exact() -> None:
    """Exploring with named ids finds exactly the states the symmetric keys stand for."""
    reduced = explore(World(ids=3, horizon=0))
    named = explore(World(ids=3, horizon=0, symmetry=False))
    assert named.violation is None and named.complete
    assert named.states == reduced.named_states
    assert reduced.reduction > 3  # three ids: most states have 2 runs, named 6 ways


def test_the_clock_mark_is_abstracted_exactly() -> None:
    """The key leaves out the clock's high-water mark: in every state, every action gives
    the same result and a successor with the same key, whether the store last read the
    clock now or only when its newest timestamp was written."""
    world = World(ids=2, horizon=2, events=0)
    calls: dict[str, Any] = {op: spec.apply for op in (*spec.OPERATIONS, "worker")}
    checked = [0]

    def visit(node: Node, depth: int, path: tuple[Action, ...]) -> None:
        stamps = [t for r in node.model.runs for t in (r.updated_at, r.terminated_at)
                  if t is not None]
        low = replace(node, model=replace(node.model, clock=max(stamps, default=-math.inf)))
        high = replace(node, model=replace(node.model, clock=node.now))
        for action in actions(node, world):
            (a, x), (b, y) = step(low, action, world, calls), step(high, action, world, calls)
            assert key(a) == key(b) and type(x) is type(y), (path, action, x, y)
            assert isinstance(x, Exception) or x == y, (path, action, x, y)
            checked[0] += 1

    assert explore(world, visit=visit).complete
    assert checked[0] > 10_000


@pytest.mark.parametrize("plant", list(SHORTEST))
def test_planted_bug_is_found_by_a_shortest_path(plant: str) -> None:
    prop, path = SHORTEST[plant]
    found = explore(World(), plant=plant)
    assert found.violation is not None and found.violation.property == prop
    assert show_path(found.violation.path) == path
    # no shorter path exists: the same search cut one step short finds nothing
    shorter = explore(World(), plant=plant, max_depth=len(path) - 1)
    assert shorter.violation is None and not shorter.complete


@pytest.mark.parametrize("plant", PLANTED_BUGS)
def test_default_command_catches_each_planted_bug(
        plant: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--plant", plant]) == 1
    out = capsys.readouterr().out
    prop, path = SHORTEST[plant]
    assert f"{prop} broken" in out and f"shortest path ({len(path)} steps)" in out
    assert "\n".join(f"  {line}" for line in path) in out


def _after(world: World, path: list[Action]) -> Node:
    node = Node(spec.initial(world.policy))
    calls: dict[str, Any] = {op: spec.apply for op in (*spec.OPERATIONS, "worker")}
    for action in path:
        node, outcome = step(node, action, world, calls)
        assert not isinstance(outcome, Exception), (action, outcome)
    return node


def test_a_clock_read_back_is_clamped_and_a_store_that_believes_it_is_caught() -> None:
    """A get one second back of a run that expired at `now` must not show it (I5); the
    model clamps the reading, a call that ignores the mark shows it and is caught."""
    world = World()
    node = _after(world, [Action("start", ("a",)), Action("transition", ("a", Status.FAILED)),
                          Action("tick")])
    back = Action("get", ("a",), "back")
    naive = PLANTED["ignores-the-mark"][1]["get"]
    for call, expected in ((spec.apply, []), (naive, ["I5"])):
        after, outcome = step(node, back, world, {"get": call})
        t = Transition(node, back, after, outcome, isinstance(outcome, Exception), False)
        assert [v[0] for v in check_step(t, world)] == expected, outcome


def test_bad_calls_and_calls_after_close_are_checked(default: Result) -> None:
    """Each bad argument is refused by its rule and each call after close() with
    StoreClosed; a model that accepted either would be caught."""
    seen = default.coverage.outcomes
    for action in BAD_CALLS:
        assert seen[(action.op, "InvalidArgument")] > 0
    assert {op for op, outcome in OUTCOMES if outcome == "StoreClosed"} == {
        op for op, outcome in seen if outcome == "StoreClosed"}
    world = World()
    node = _after(world, [Action("start", ("a",))])
    closed = _after(world, [Action("close")])
    run = Run("a", Status.PENDING, 0.0, 0.0)
    for before, action, expected in ((node, Action("start", ("",)), "R1"),
                                     (closed, Action("get", ("a",)), "L1"),
                                     (node, Action("prune", (), "nan"), "C1")):
        t = Transition(before, action, before, run, False, False)  # accepted: wrong
        assert [v[0] for v in check_step(t, world)] == [expected]


def test_replay_passes_the_reference_and_sqlite() -> None:
    memory = replay_paths(WIDE, MemoryRunStore, 4)
    assert memory.failure is None and memory.programs > 500
    sqlite = replay_paths(World(ids=2, horizon=1), on_disk, 3)
    assert sqlite.failure is None and sqlite.programs > 100


class _BelievesTheClock(MemoryRunStore):
    """The reference, but every call works at the raw reading (it keeps the mark, and
    never uses it)."""

    def _now(self, who: str = "*") -> float:
        super()._now(who)
        return float(self._clock())


#: a cap of zero: the first run to end is evicted at once, so a wrong eviction shows early
NO_TERMINAL = World(ids=2, horizon=0, policy=Policy(max_terminal=0, max_active=2))


@pytest.mark.parametrize(("world", "store", "invariant", "depth"), [
    (NO_TERMINAL, EvictsActiveStore, "I4", 3), (WIDE, CountsOnlyTerminalStore, "I3", 3),
    (WIDE, TwoWorkersStore, "I11", 2), (WIDE, _BelievesTheClock, "I8", 2)])
def test_replay_catches_broken_stores(world: World, store: type, invariant: str,
                                      depth: int) -> None:
    out = replay_paths(world, store, depth)
    assert out.failure is not None and out.failure[0].startswith(invariant), out.failure


def test_cli_reports_states_per_second_and_replays(
        capsys: pytest.CaptureFixture[str]) -> None:
    unreachable = ("AdmissionRefused", "eviction-beside-active", "E1-deadline",
                   "E2-deadline")
    assert main(["explore", "--ids", "2", "--horizon", "1", "--events", "0", "--replay", "2",
                 *(f"--allow-unreached={name}" for name in unreachable)]) == 0
    out = capsys.readouterr().out
    assert "states/s" in out and "symmetry reduction" in out and "table edges 6/6" in out
    assert f"sometimes: {len(SOMETIMES) - 4}/{len(SOMETIMES)} reached" in out
    assert "memory agrees with the model" in out


def test_cli_names_every_planted_bug_and_refuses_a_bad_world(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert set(PLANTED_BUGS) == set(PLANTED)
    assert main(["explore", "--policy", '{"ttl": -1}']) == 2
    assert "bad world" in capsys.readouterr().err
    assert main(["explore", "--allow-unreached", "nothing-like-it"]) == 2
    assert "no sometimes-property nothing-like-it" in capsys.readouterr().err


def test_cli_says_a_search_stopped_short_is_no_pass(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--max-states", "100"]) == 1
    assert "unknown, not a pass" in capsys.readouterr().out


class _NoWorker(MemoryRunStore):
    """A store that has no cleanup worker, and says so."""

    capabilities = Capabilities(worker=False)

    def start_cleanup_worker(self, interval: float) -> bool:
        raise NotImplementedError("no cleanup worker")


def test_replay_leaves_out_what_a_store_lacks() -> None:
    """Paths calling what a store declares it lacks are not replayed, the rest are, and
    it conforms on them; replayed regardless, they fail."""
    out = replay_paths(WIDE, _NoWorker, 3, _NoWorker.capabilities)
    assert out.failure is None and out.programs > 100 and out.skipped > 0
    unfiltered = replay_paths(WIDE, _NoWorker, 2)
    assert unfiltered.failure is not None and "start_cleanup_worker" in unfiltered.failure[0]
