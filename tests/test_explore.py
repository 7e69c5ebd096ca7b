"""The explorer: it covers a small world completely, its symmetry reduction is exact, it
finds each planted bug by a shortest path, and its paths replayed against a store catch
the broken stores and pass the reference ones."""

from __future__ import annotations

import pytest

from model.cli import main
from model.explore import PLANTED, World, explore, replay_paths, show_path
from model.lifecycle import TRANSITIONS
from model.policy import Policy, SweepMode
from reference.broken import CountsOnlyTerminalStore, EvictsActiveStore, TwoWorkersStore
from reference.memory import MemoryRunStore
from reference.sqlite import on_disk

SMALL = World(ids=2, horizon=3)
#: three ids, so a third start meets max_active=2; one tick, to stay small
WIDE = World(ids=3, horizon=1)
#: a TTL and a lease of one second, so the worker has work within the horizon
QUICK = World(ids=2, horizon=3, policy=Policy(
    ttl=1.0, max_terminal=1, max_active=2, max_events_per_run=1, stale_after=1.0,
    sweep=SweepMode.BACKGROUND))


def test_small_world_is_covered_and_holds_every_property() -> None:
    result = explore(SMALL)
    assert result.complete and result.violation is None
    assert result.states > 1000 and result.transitions > 10 * result.states
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert result.coverage.edges == table
    assert len(result.coverage.statuses) == 5
    # the lease sweep reaped, the TTL expired and the cap evicted something
    assert result.coverage.outcomes[("worker", "ok")] > 0


def test_symmetry_reduction_is_exact() -> None:
    """Exploring with named ids finds exactly the states the symmetric keys stand for."""
    reduced = explore(World(ids=3, horizon=0))
    named = explore(World(ids=3, horizon=0, symmetry=False))
    assert named.violation is None and named.complete
    assert named.states == reduced.named_states
    assert reduced.reduction > 3  # three ids: most states have 2 runs, named 6 ways


@pytest.mark.parametrize(("plant", "world", "prop", "steps"), [
    ("evicts-active", SMALL, "I4", 3),
    ("admits-one-more", WIDE, "I3", 3),
    ("idle-worker", QUICK, "E2", 6),
])
def test_planted_bug_is_found_by_a_shortest_path(plant: str, world: World, prop: str,
                                                  steps: int) -> None:
    found = explore(world, plant=plant)
    assert found.violation is not None and found.violation.property == prop
    assert len(found.violation.path) == steps, show_path(found.violation.path)
    # no shorter path exists: the same search cut one step short finds nothing
    shorter = explore(world, plant=plant, max_depth=steps - 1)
    assert shorter.violation is None


def test_eventual_property_holds_only_with_a_fair_worker() -> None:
    """E1/E2 are about the worker: the correct model with a worker never fails them."""
    assert explore(QUICK).violation is None
    assert "idle-worker" in PLANTED


def test_replay_passes_the_reference_and_sqlite() -> None:
    assert replay_paths(WIDE, MemoryRunStore, 5).failure is None
    sqlite = replay_paths(SMALL, on_disk, 3)
    assert sqlite.failure is None and sqlite.programs > 50


@pytest.mark.parametrize(("store", "invariant"), [
    (EvictsActiveStore, "I4"), (CountsOnlyTerminalStore, "I3"), (TwoWorkersStore, "I11")])
def test_replay_catches_broken_stores(store: type, invariant: str) -> None:
    out = replay_paths(WIDE, store, 5)
    assert out.failure is not None and out.failure[0].startswith(invariant)


def test_cli_reports_states_per_second_and_the_shortest_path(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--horizon", "2", "--replay", "2"]) == 0
    out = capsys.readouterr().out
    assert "states/s" in out and "symmetry reduction" in out and "table edges 6/6" in out
    assert "memory agrees with the model" in out
    assert main(["explore", "--ids", "3", "--horizon", "1", "--plant", "admits-one-more"]) == 1
    out = capsys.readouterr().out
    assert "I3 broken" in out and "shortest path (3 steps)" in out


def test_cli_names_every_planted_bug_and_refuses_a_bad_world(
        capsys: pytest.CaptureFixture[str]) -> None:
    from model.cli import PLANTED_BUGS

    assert set(PLANTED_BUGS) == set(PLANTED)
    assert main(["explore", "--policy", '{"ttl": -1}']) == 2
    assert "bad world" in capsys.readouterr().err


def test_replay_leaves_out_what_a_store_lacks() -> None:
    """The example store has no worker: paths that start one are not replayed, the
    rest are, and it conforms on them."""
    from examples.simple_store import SimpleStore

    out = replay_paths(WIDE, SimpleStore, 4, SimpleStore.capabilities)
    assert out.failure is None and out.programs > 100 and out.skipped > 0
    unfiltered = replay_paths(WIDE, SimpleStore, 2)
    assert unfiltered.failure is not None and "start_cleanup_worker" in unfiltered.failure[0]
