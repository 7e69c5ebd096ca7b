"""Stores under threads: no exception but the typed ones, and the invariants of the final
state hold; the start race (I11) run for real, counted from the interpreter. (The
linearizability check is tests/test_linearizability.py.)"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from runbound.model.check.probes import ATTEMPTS_PER_TRIAL, RACE_TRIALS, probe_start_race
from runbound.model.clock import Clock
from runbound.model.errors import RunboundError
from runbound.model.invariants import Observation, state_violations
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.reference.broken import TwoWorkersStore
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis_server import on_local_server
from runbound.reference.sqlite import on_disk


@pytest.mark.parametrize(("make", "rounds"), [(MemoryRunStore, 500), (on_disk, 200),
                                              (on_local_server, 100)],
                         ids=["memory", "sqlite", "redis"])
def test_store_threads_keep_invariants(make: Callable[[Policy, Clock], Any],
                                       rounds: int) -> None:
    """Fewer rounds where every call is a durable write (SQLite and Redis fsync it)."""
    policy = Policy(ttl=0.5, max_terminal=5, max_active=4, max_events_per_run=3,
                    stale_after=2.0)
    store = make(policy, time.monotonic)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(rounds):
            rid = f"r{rng.randrange(12)}"
            op = rng.randrange(6)
            try:
                if op == 0:
                    store.start(rid)
                elif op == 1:
                    store.transition(rid, rng.choice(list(Status)))
                elif op == 2:
                    store.append_event(rid, "x")
                elif op == 3:
                    store.heartbeat(rid)
                elif op == 4:
                    store.list_runs(3, rng.choice([None, Status.RUNNING]))
                else:
                    store.prune()
            except RunboundError:
                pass
            except BaseException as error:
                errors.append(error)
            obs = Observation(store.snapshot())
            if state_violations(obs, policy):
                errors.append(AssertionError(state_violations(obs, policy)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []


@pytest.mark.parametrize(("make", "trials"), [(MemoryRunStore, RACE_TRIALS),
                                              (on_disk, 50), (on_local_server, 100)],
                         ids=["memory", "sqlite", "redis"])
def test_store_start_race_starts_one_worker(make: Callable[[Policy, Clock], Any],
                                            trials: int) -> None:
    """Every trial: two threads released together call start_cleanup_worker on a new
    store; never more than one new thread, and the store's count agrees. The probe goes
    on until `trials` trials overlapped, so the race was run that often, not assumed, on
    a loaded machine too. (A new SQLite file costs 20 ms: fewer.)"""
    result = probe_start_race(make, trials=trials)
    assert result.verdict == "pass", result
    assert result.exercised == trials <= result.trials


def test_TwoWorkersStore_start_race_is_caught() -> None:
    result = probe_start_race(TwoWorkersStore)
    assert result.verdict == "fail" and result.trials == 1
    assert "2 cleanup worker threads" in result.message


class UndercountingStore(MemoryRunStore):
    """One worker, as it should, but it says it has none."""

    def cleanup_workers_alive(self) -> int:
        return 0


def test_a_store_that_misreports_its_threads_fails() -> None:
    """The interpreter is believed, not the store."""
    result = probe_start_race(UndercountingStore)
    assert result.verdict == "fail" and "misreports" in result.message


def test_start_race_never_overlapping_is_unknown_not_pass() -> None:
    """One thread a trial cannot race: the window was never exercised, however many
    trials were tried (all it may try: ten a required one)."""
    result = probe_start_race(MemoryRunStore, threads=1, trials=5)
    assert result.verdict == "unknown" and result.exercised == 0
    assert result.trials == 5 * ATTEMPTS_PER_TRIAL
    assert "exercised in 0 of 50 trials, not the 5 required" in result.message
