"""The simulator: its fast engine gives the model's numbers exactly (and a real store's),
its workloads have the shapes they claim, and its metrics tell the misses apart."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import runbound.model.sim.simulate as simulate_module
from runbound.model.errors import InvalidArgument
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.sim.simulate import FastEngine, Metrics, ModelEngine, StoreEngine, simulate
from runbound.model.sim.workload import (
    Bursts,
    DailyCycle,
    Fixed,
    LogNormal,
    Pareto,
    Poisson,
    Workload,
    draw,
)
from runbound.reference.memory import MemoryRunStore
from runbound.reference.seeds.s1_adapter import S1Store
from runbound.reference.sqlite import on_disk

MIXED = Workload(runs=300, arrivals=Poisson(0.5), durations=LogNormal(30, 1),
                 never_finish=0.1, heartbeat_every=10, events_per_run=2,
                 read_delay=LogNormal(60, 1.5))
POLICY = Policy(ttl=120, max_terminal=20, max_active=10, stale_after=40, max_events_per_run=3)


#: leases renewed only by events, a fifth of runs dead, a tight admission limit: lazy
#: sweeps reap runs at the instant another finishes (ties in eviction order), starts are
#: admitted only because their sweep reaps, calls are refused for a lapsed lease
LEASED = Workload(runs=300, arrivals=Poisson(0.5), durations=LogNormal(30, 1),
                  never_finish=0.2, events_per_run=3, read_delay=LogNormal(60, 1.5))
LEASE_POLICY = Policy(ttl=120, max_terminal=20, max_active=10, stale_after=20,
                      max_events_per_run=3)
MODES = [(SweepMode.LAZY, None), (SweepMode.BACKGROUND, 15.0), (SweepMode.BOTH, 7.0)]
CASES = [(w, p, sweep, interval) for w, p in ((MIXED, POLICY), (LEASED, LEASE_POLICY))
         for sweep, interval in MODES]


def observed(m: Metrics) -> tuple[object, ...]:
    return (m.starts, m.refused, m.finished, m.never_finished, m.reads, m.samples, m.events,
            m.calls)


@cache
def models_numbers(work: Workload, policy: Policy, interval: float | None
                   ) -> tuple[object, ...]:
    return observed(simulate(work, policy, engine=ModelEngine(policy),
                             worker_interval=interval, sample_every=10))


def fast_numbers(simulator: ModuleType, work: Workload, policy: Policy,
                 interval: float | None, shared: bool) -> tuple[object, ...]:
    engine = simulator.FastEngine(policy, shared_order=shared)
    return observed(simulator.simulate(work, policy, engine=engine,
                                       worker_interval=interval, sample_every=10))


@pytest.mark.parametrize("shared", [True, False], ids=["one order", "TTL apart"])
@pytest.mark.parametrize(("work", "policy", "sweep", "interval"), CASES,
                         ids=[f"{'mixed' if w is MIXED else 'leased'}-{m}" for w, _, m, _ in CASES])
def test_fast_engine_gives_the_models_numbers(work: Workload, policy: Policy,
                                              sweep: SweepMode, interval: float | None,
                                              shared: bool) -> None:
    """Both ways of keeping the TTL: in the eviction order (one TTL), and apart from it
    (the fallback for a TTL per outcome), on one TTL where the model can judge."""
    policy = replace(policy, sweep=sweep)
    fast = simulate(work, policy, engine=FastEngine(policy, shared_order=shared),
                    worker_interval=interval, sample_every=10)
    assert observed(fast) == models_numbers(work, policy, interval)
    # the workloads exercise every rule: admission, the lease, the cap, the TTL
    assert fast.refused and fast.reaped and fast.evicted and fast.miss_rate("unknown")
    if work is MIXED:
        assert fast.expired and fast.miss_rate("expired")


#: fixed durations and heartbeats on whole seconds: many calls at one instant
TIES = Workload(runs=200, arrivals=Poisson(1.0), durations=Fixed(5.0), heartbeat_every=1.0,
                never_finish=0.3, events_per_run=1, read_delay=Fixed(0.0))


@pytest.mark.parametrize("policy", [Policy(ttl=0, max_terminal=0, stale_after=0),
                                    Policy(max_terminal=0, max_active=3, stale_after=2),
                                    Policy(max_events_per_run=0, ttl=10, max_terminal=5),
                                    Policy()], ids=["zeros", "admission", "ring 0", "none"])
@pytest.mark.parametrize("shared", [True, False], ids=["one order", "TTL apart"])
def test_fast_engine_at_the_edges(policy: Policy, shared: bool) -> None:
    """Limits of 0, no limits, and ties at every instant, with a worker and lazy sweeps."""
    policy = replace(policy, sweep=SweepMode.BOTH)
    fast = fast_numbers(simulate_module, TIES, policy, 2.5, shared)
    assert fast == models_numbers(TIES, policy, 2.5)


#: planted defects in the fast engine (text of model/sim/simulate.py -> its replacement),
#: each a mistake the loop invites; the agreement check must catch every one
PLANTED = {
    "a run reaped at a finish's instant is put after it, not in eviction order":
        ("bisect.insort(order, j, lo=head, key=key)", "order.append(j)"),
    "a call refused for its lapsed lease sweeps all the same":
        ("if at != 1 or (lazy and live[i] + after <= now):", "if at != 1:"),
    "the cap keeps one run too many":
        ("while terminal > cap:\n                j",
         "while terminal > cap + 1:\n                j"),
    "a TTL ends a moment late":
        ("end[order[head]] + ttl <= now:", "end[order[head]] + ttl < now:"),
    "the fallback's TTL ends a moment late":
        ("by_expiry[0][0] <= now:\n                j", "by_expiry[0][0] < now:\n                j"),
    "admission ignores the runs its lazy sweep would reap":
        ("alive -= sum(1 for u in live.values() if u + after <= now)", "pass"),
    "a sweep reaps one stale run only":
        ("reaped += 1\n", "reaped += 1\n                    break\n"),
}


def planted(old: str, new: str) -> ModuleType:
    source = Path(simulate_module.__file__).read_text()
    assert source.count(old) == 1, old
    module = ModuleType("planted_simulate")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(source.replace(old, new), module.__name__, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


@pytest.mark.parametrize("defect", PLANTED)
def test_agreement_catches_a_planted_defect(defect: str) -> None:
    mutant = planted(*PLANTED[defect])
    for work, policy, sweep, interval in CASES:
        policy = replace(policy, sweep=sweep)
        for shared in (True, False):
            try:
                numbers = fast_numbers(mutant, work, policy, interval, shared)
            except (KeyError, ValueError, IndexError):
                return  # the defect broke the engine outright: caught
            if numbers != models_numbers(work, policy, interval):
                return
    pytest.fail(f"no case tells the planted defect apart: {defect}")


@pytest.mark.parametrize(("work", "policy"), [(MIXED, POLICY), (LEASED, LEASE_POLICY)],
                         ids=["mixed", "leased"])
@pytest.mark.parametrize("factory", [MemoryRunStore, on_disk])
def test_a_real_store_on_the_virtual_clock_gives_the_same_numbers(
        factory: object, work: Workload, policy: Policy) -> None:
    engine = StoreEngine(factory, policy)  # type: ignore[arg-type]
    try:
        store = simulate(work, policy, engine=engine, sample_every=10)
    finally:
        engine.close()
    assert observed(store) == observed(simulate(work, policy, sample_every=10))


def test_misses_are_told_apart() -> None:
    reads = Workload(runs=2000, arrivals=Poisson(1.0), durations=Fixed(5.0),
                     late_readers=1.0, read_delay=LogNormal(60, 1.0))
    ttl_only = simulate(reads, Policy(ttl=60))
    assert ttl_only.miss_rate("unknown") == 0
    assert all((o == "expired") == (d >= 60) for d, o, _ in ttl_only.reads)
    cap_only = simulate(reads, Policy(max_terminal=10))
    assert cap_only.miss_rate("expired") == 0 and cap_only.miss_rate("unknown") > 0.5
    assert cap_only.peak_terminal == 10
    keep_all = simulate(reads, Policy())
    assert keep_all.miss_rate() == 0 and keep_all.peak_terminal > 1000


def test_arrival_shapes() -> None:
    gaps = np.diff(Poisson(4.0).times(np.random.default_rng(1), 20_000))
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.05)
    day = DailyCycle(1.0, amplitude=0.9, period=1000.0).times(np.random.default_rng(2), 5000)
    assert len(day) == 5000 and (np.diff(day) >= 0).all()
    first_half = int((day % 1000 < 500).sum())
    assert first_half > 0.7 * len(day)  # the sine is above its mean in the first half
    burst = Bursts(0.1, 10.0, every=100.0, length=10.0).times(np.random.default_rng(3), 5000)
    assert (np.diff(burst) >= 0).all()
    inside = int((burst % 100 < 10).sum())
    # 10/s for 10 s against 0.1/s for 90 s: 100 of every 109 arrivals fall in a burst
    assert inside / len(burst) == pytest.approx(100 / 109, rel=0.03)
    # in the quiet part the rate is 0.1/s: about 9 of its 90 s hold an arrival each
    quiet = np.diff(burst[burst % 100 >= 10])
    assert len(quiet) > 300
    rng = np.random.default_rng(4)
    tail = Pareto(10.0, 1.5).draw(rng, 20_000)
    assert tail.min() >= 10.0
    # P(X > 40) = (10/40)^1.5 = 1/8 for a Pareto of scale 10, alpha 1.5
    assert (tail > 40).mean() == pytest.approx(1 / 8, rel=0.1)
    assert np.median(LogNormal(60.0, 1.0).draw(rng, 20_000)) == pytest.approx(60, rel=0.05)


def test_the_same_seed_draws_the_same_workload() -> None:
    again = draw(MIXED)
    for name, value in vars(draw(MIXED)).items():
        assert np.array_equal(value, getattr(again, name)), name
    other = draw(replace(MIXED, seed=1))
    assert not np.array_equal(other.arrive, again.arrive)
    assert simulate(MIXED, POLICY) == simulate(MIXED, POLICY)


def test_never_finishing_runs_need_a_lease() -> None:
    stuck = Workload(runs=500, arrivals=Poisson(1.0), durations=Fixed(10.0),
                     never_finish=0.2, heartbeat_every=2.0, late_readers=0.0)
    no_lease = simulate(stuck, Policy(max_active=50))
    # lazy sweeps alone would leave the last stuck runs: no call comes after them
    leased = simulate(stuck, Policy(max_active=50, stale_after=30.0, sweep=SweepMode.BOTH),
                      worker_interval=10.0)
    assert no_lease.refused > 0 and no_lease.peak_active == 50
    assert leased.refused == 0 and leased.reaped == leased.never_finished > 0


def test_seed_replica_runs_through_the_simulator() -> None:
    """S1 caps every run with one best-effort bound, only at a write: between writes its
    terminal count can exceed what the reference keeps under the same policy."""
    policy = Policy(ttl=86_400, max_terminal=20)
    work = Workload(runs=400, arrivals=Poisson(1.0), durations=Fixed(3.0), late_readers=0.0)
    engine = StoreEngine(S1Store, policy)
    try:
        seed = simulate(work, policy, engine=engine, sample_every=5)
    finally:
        engine.close()
    assert seed.starts == 400 and seed.samples
    assert simulate(work, policy, sample_every=5).peak_terminal == 20


def test_failures_can_be_kept_longer() -> None:
    """A TTL per outcome (a candidate policy, in the fast engine only): failed runs stay
    readable for their longer TTL, completed ones for theirs."""
    work = Workload(runs=3000, arrivals=Poisson(1.0), durations=Fixed(5.0),
                    outcomes=((Status.COMPLETED, 0.7), (Status.FAILED, 0.3)),
                    late_readers=1.0, read_delay=LogNormal(600, 1.0))
    policy = Policy(ttl=300)
    split = simulate(work, policy, engine=FastEngine(policy, {Status.FAILED: 3600}))
    same = simulate(work, policy)
    assert split.miss_rate(status=Status.COMPLETED) == same.miss_rate(status=Status.COMPLETED)
    assert split.miss_rate(status=Status.FAILED) < same.miss_rate(status=Status.FAILED) / 4
    assert all((o == "expired") == (d >= (3600 if s is Status.FAILED else 300))
               for d, o, s in split.reads)


def test_stale_reads_are_seen_in_the_first_seed() -> None:
    """S1 shows a finished run past its TTL until the next write or sweep prunes it."""
    policy = Policy(ttl=60, max_terminal=10_000)
    work = Workload(runs=300, arrivals=Poisson(0.05), durations=Fixed(1.0),
                    late_readers=1.0, read_delay=LogNormal(60, 0.5))
    engine = StoreEngine(S1Store, policy)
    try:
        seed = simulate(work, policy, engine=engine)
    finally:
        engine.close()
    assert seed.miss_rate("stale") > 0.05
    assert simulate(work, policy).miss_rate("stale") == 0


@pytest.mark.parametrize("make", [lambda: Poisson(0.0), lambda: LogNormal(float("nan")),
                                  lambda: Bursts(1.0, 2.0, every=10.0, length=20.0),
                                  lambda: Workload(runs=-1),
                                  lambda: Workload(outcomes=((Status.RUNNING, 1.0),))],
                         ids=["rate 0", "NaN median", "burst longer than period",
                              "negative runs", "active outcome"])
def test_a_bad_workload_is_refused_by_rule(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument, match="WL1"):
        make()
