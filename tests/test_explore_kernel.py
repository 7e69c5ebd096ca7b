"""The explorer's kernel against its oracle, the spec-driven explorer: on every world
below (each sweep mode, TTL 0, caps 0, events, leases, no limits, named ids) both reach
the same states, make the same transitions, to the same depth, with the same coverage and
the same witness path for every sometimes-property; both catch each planted bug by the
same shortest path with the same message; and a kernel that differs from the spec is
told apart (the comparison can fail) or refuses to report (its checks can fail)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from runbound.cli import main
from runbound.model.check import explore as oracle
from runbound.model.check import explore_kernel as kernel
from runbound.model.check.explore import PLANTED, Result, World
from runbound.model.check.profiles import profile_name
from runbound.model.policy import Policy, SweepMode

#: the default world's policy, in each sweep mode
_DEFAULT = {"ttl": 0.5, "max_terminal": 1, "max_active": 2, "max_events_per_run": 1,
            "stale_after": 0.5}


def _policy(**fields: Any) -> Policy:
    with warnings.catch_warnings():  # a lease without ttl or cap keeps reaped runs: on purpose
        warnings.simplefilter("ignore")
        return Policy(**fields)


WORLDS: dict[str, World] = {
    "background": World(ids=2, horizon=2),
    "lazy": World(ids=2, horizon=1, policy=_policy(**_DEFAULT, sweep=SweepMode.LAZY)),
    "both": World(ids=2, horizon=1, policy=_policy(**_DEFAULT, sweep=SweepMode.BOTH)),
    "ttl-0": World(ids=3, horizon=1, policy=_policy(ttl=0, max_terminal=2, max_active=2,
                                                    stale_after=0.5)),
    "caps-0": World(ids=3, horizon=1, policy=_policy(max_terminal=0, max_active=2, ttl=1.5,
                                                     sweep=SweepMode.BOTH)),
    "max-active-1": World(ids=2, policy=_policy(**{**_DEFAULT, "max_active": 1})),
    "events": World(ids=2, horizon=1, events=2, policy=_policy(max_events_per_run=1, ttl=1,
                                                              max_terminal=1)),
    "events-0-lazy": World(ids=2, horizon=1, events=1, policy=_policy(
        max_events_per_run=0, stale_after=1, sweep=SweepMode.LAZY)),
    "lease-0": World(ids=2, horizon=3, interval=2, policy=_policy(stale_after=0, ttl=1,
                                                                  max_active=1)),
    "lease-only": World(ids=2, horizon=1, events=0, policy=_policy(stale_after=0.5,
                                                                   max_active=2)),
    "no-limits": World(ids=2, horizon=1, events=0, policy=_policy()),
    "named-ids": World(ids=3, horizon=0, events=0, symmetry=False),
}
if profile_name() == "thorough":  # the default world: about 15 s through the oracle
    WORLDS["default"] = World()


def _oracle(world: World, plant: str | None = None) -> tuple[Result, set[oracle.Key]]:
    keys: set[oracle.Key] = set()
    result = oracle.explore(world, plant=plant,
                            visit=lambda node, depth, path: keys.add(
                                oracle.key(node, world.symmetry)))
    return result, keys


def differences(a: Result, a_keys: set[oracle.Key], b: Result, b_keys: set[oracle.Key]
                ) -> list[str]:
    """Where two explorations of one world differ (nothing: they agree)."""
    out = []
    if a_keys != b_keys:
        out.append(f"states: {len(a_keys - b_keys)} only in the first, "
                   f"{len(b_keys - a_keys)} only in the second")
    for name in ("states", "transitions", "depth", "named_states", "complete"):
        if getattr(a, name) != getattr(b, name):
            out.append(f"{name}: {getattr(a, name)} != {getattr(b, name)}")
    ca, cb = a.coverage, b.coverage
    if ca.statuses != cb.statuses or ca.edges != cb.edges:
        out.append(f"statuses or edges: {ca.statuses ^ cb.statuses} {ca.edges ^ cb.edges}")
    if ca.outcomes != cb.outcomes:
        out.append(f"(call, outcome) counts: {ca.outcomes - cb.outcomes} against "
                   f"{cb.outcomes - ca.outcomes}")
    if a.reached != b.reached:
        out.append("witnesses: " + ", ".join(
            n for n in a.reached.keys() | b.reached.keys()
            if a.reached.get(n) != b.reached.get(n)))
    if a.violation != b.violation:
        out.append(f"violation: {a.violation} != {b.violation}")
    return out


def _kernel(world: World, plant: str | None = None, *, pure: bool = False
            ) -> tuple[Result, set[oracle.Key]]:
    module = kernel if pure or kernel.compiled() is None else kernel.compiled()
    assert module is not None
    search = module.search(world, plant)
    return search.result, search.oracle_keys()


@pytest.mark.parametrize("name", list(WORLDS))
def test_kernel_reaches_what_the_oracle_reaches(name: str) -> None:
    world = WORLDS[name]
    expected, keys = _oracle(world)
    got, got_keys = _kernel(world)
    assert differences(expected, keys, got, got_keys) == []
    assert expected.complete and expected.violation is None and expected.states > 100


@pytest.mark.parametrize("plant", list(PLANTED))
@pytest.mark.parametrize("name", ["default", "ttl-0", "caps-0", "lazy"])
def test_kernel_catches_each_planted_bug_as_the_oracle_does(name: str, plant: str) -> None:
    """The same property, message and shortest path (or, where the world cannot show
    the bug, the same states explored without a violation)."""
    world = WORLDS.get(name, World())
    expected, keys = _oracle(world, plant)
    got, got_keys = _kernel(world, plant)
    if expected.violation is not None:  # the oracle visited only the states it popped
        keys = got_keys
    assert differences(expected, keys, got, got_keys) == []
    if name == "default":
        assert got.violation is not None


def test_the_pure_kernel_is_the_compiled_one() -> None:
    """Whichever runs by default (compiled by `make kernel`, or not), the source run as
    plain Python agrees with it."""
    world = WORLDS["both"]
    assert differences(*_kernel(world), *_kernel(world, pure=True)) == []
    assert kernel.engine() in ("compiled", "python")


class _ForgetsDrops(kernel.Search):
    """A kernel whose ring buffer forgets what it drops: no invariant reads the count,
    only the states differ."""

    def append(self, runs: tuple[int, ...], scal: int, nk: kernel.KKey, depth: int,
               base: tuple[int, ...], rid: int, i: int, now: int) -> None:
        if (i >= 0 and kernel._active(kernel._status(base[i]))
                and kernel._events(base[i]) == self.max_events):
            old = base[i]
            new = kernel._pack(rid, kernel._status(old), now, kernel._term_raw(old) - 2,
                               kernel._events(old), 0)
            self.take(runs, scal, nk, depth, kernel.APPEND | rid << 5, kernel.APPEND,
                      kernel.OK, (*base[:i], new, *base[i + 1:]), scal, rid, -1)
            return
        super().append(runs, scal, nk, depth, base, rid, i, now)


class _ReportsEverything(kernel.Search):
    """A kernel whose state check fires where the spec's does not."""

    def state_violated(self, runs: tuple[int, ...], scal: int) -> bool:
        return len(runs) == 2


class _ReplaysOnlyCounts(kernel.Search):
    """A kernel that takes a node's calls made once for its (runs, now) as done at the
    other nodes with the same runs and `now`: it counts them, but never queues what
    they reach under those nodes' own worker, `due` and `since`."""

    def replay(self, part: kernel._Part, scal: int, nk: kernel.KKey, depth: int) -> None:
        part.uses += 1


def test_a_kernel_that_differs_from_the_spec_is_told_apart() -> None:
    world = WORLDS["events"]
    expected, keys = _oracle(world)
    for wrong in (_ForgetsDrops, _ReplaysOnlyCounts):
        search = wrong(world, None, 2_000_000, None)
        search.run()
        found = differences(expected, keys, search.result, search.oracle_keys())
        assert found and found[0].startswith("states:")
    with pytest.raises(RuntimeError, match="the kernel and the spec disagree"):
        _ReportsEverything(world, None, 2_000_000, None).run()


def test_kernel_stops_where_it_is_told() -> None:
    """max_states and max_depth leave the search incomplete, as the oracle's."""
    world = WORLDS["background"]
    for limits in ({"max_states": 50}, {"max_depth": 3}):
        a = oracle.explore(world, **limits)  # type: ignore[arg-type]
        b = kernel.explore(world, **limits)  # type: ignore[arg-type]
        assert not a.complete and not b.complete
        assert (a.states, a.transitions, a.depth) == (b.states, b.transitions, b.depth)


def test_cli_explores_with_the_kernel_unless_told(capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    args = ["explore", "--ids", "2", "--horizon", "1", "--events", "0",
            *(f"--allow-unreached={name}" for name in (
                "AdmissionRefused", "eviction-beside-active", "E1-deadline", "E2-deadline"))]
    assert main(args) == 0
    by_kernel = capsys.readouterr().out
    assert main([*args, "--oracle"]) == 0
    by_oracle = capsys.readouterr().out
    assert "engine: kernel" in by_kernel and "engine: oracle" in by_oracle
    # the same report, but for the engine line and the timings
    def same(out: str) -> list[str]:
        return [line for line in out.splitlines()
                if not line.startswith(("engine:", "world:")) and "states/s" not in line]
    assert same(by_kernel) == same(by_oracle)
