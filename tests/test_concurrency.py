"""Stores under threads: no exception but the typed ones, and the invariants of
the final state hold. (The linearizability checker is its own, later, piece.)"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from model.clock import Clock
from model.errors import RunboundError
from model.invariants import Observation, state_violations
from model.lifecycle import Status
from model.policy import Policy
from reference.memory import MemoryRunStore
from reference.redis_server import on_local_server
from reference.sqlite import on_disk


@pytest.mark.parametrize("make", [MemoryRunStore, on_disk, on_local_server],
                         ids=["memory", "sqlite", "redis"])
def test_store_threads_keep_invariants(make: Callable[[Policy, Clock], Any]) -> None:
    policy = Policy(ttl=0.5, max_terminal=5, max_active=4, max_events_per_run=3,
                    stale_after=2.0)
    store = make(policy, time.monotonic)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(500):
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
