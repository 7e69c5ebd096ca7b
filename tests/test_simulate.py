"""The simulator: its fast engine gives the model's numbers exactly (and a real store's),
its workloads have the shapes they claim, and its metrics tell the misses apart."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest

from model.policy import Policy, SweepMode
from model.simulate import (
    Bursts,
    DailyCycle,
    Fixed,
    LogNormal,
    Metrics,
    ModelEngine,
    Pareto,
    Poisson,
    StoreEngine,
    Workload,
    simulate,
)
from reference.memory import MemoryRunStore
from reference.seeds.adapters import S1Store
from reference.sqlite import on_disk

MIXED = Workload(runs=300, arrivals=Poisson(0.5), durations=LogNormal(30, 1),
                 never_finish=0.1, heartbeat_every=10, events_per_run=2,
                 read_delay=LogNormal(60, 1.5))
POLICY = Policy(ttl=120, max_terminal=20, max_active=10, stale_after=40, max_events_per_run=3)


def observed(m: Metrics) -> tuple[object, ...]:
    return m.starts, m.refused, m.finished, m.reads, m.samples


@pytest.mark.parametrize(("sweep", "interval"), [(SweepMode.LAZY, None),
                                                 (SweepMode.BACKGROUND, 15.0),
                                                 (SweepMode.BOTH, 7.0)])
def test_fast_engine_gives_the_models_numbers(sweep: SweepMode, interval: float | None
                                              ) -> None:
    policy = replace(POLICY, sweep=sweep)
    fast = simulate(MIXED, policy, worker_interval=interval, sample_every=10)
    model = simulate(MIXED, policy, engine=ModelEngine(policy), worker_interval=interval,
                     sample_every=10)
    assert observed(fast) == observed(model)
    # the workload exercises every rule
    assert fast.refused and fast.evicted and fast.expired and fast.reaped
    assert fast.miss_rate("expired") and fast.miss_rate("unknown")


@pytest.mark.parametrize("factory", [MemoryRunStore, on_disk])
def test_a_real_store_on_the_virtual_clock_gives_the_same_numbers(factory: object) -> None:
    engine = StoreEngine(factory, POLICY)  # type: ignore[arg-type]
    try:
        store = simulate(MIXED, POLICY, engine=engine, sample_every=10)
    finally:
        engine.close()
    assert observed(store) == observed(simulate(MIXED, POLICY, sample_every=10))


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
    import random

    gaps = [b - a for a, b in zip(*(lambda t: (t, t[1:]))(
        list(Poisson(4.0).times(random.Random(1), 20_000))), strict=False)]
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.05)
    day = list(DailyCycle(1.0, amplitude=0.9, period=1000.0).times(random.Random(2), 5000))
    first_half = sum(1 for t in day if t % 1000 < 500)
    assert first_half > 0.7 * len(day)  # the sine is above its mean in the first half
    burst = list(Bursts(0.1, 10.0, every=100.0, length=10.0).times(random.Random(3), 5000))
    inside = sum(1 for t in burst if t % 100 < 10)
    # 10/s for 10 s against 0.1/s for 90 s: 100 of every 109 arrivals fall in a burst
    assert inside / len(burst) == pytest.approx(100 / 109, rel=0.03)
    rng = random.Random(4)
    assert min(Pareto(10.0, 1.5).draw(rng) for _ in range(1000)) >= 10.0


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
    from model.lifecycle import Status
    from model.simulate import FastEngine

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
