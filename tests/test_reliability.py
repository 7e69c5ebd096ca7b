"""The reliability suite (issue 11), each part of `make soak` (runbound/soak.py) run small
against every store: crashes, stalls, threads on the real clock, malformed calls, and
runs that never finish. Each part is also run once against a store (or a child) with
one planted defect, to show that it can fail. Sizes are effort, not seconds: nothing
here asserts how long anything took (`make soak` prints the rates and cost ratios)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runbound.model.clock import Clock
from runbound.model.policy import Policy
from runbound.model.records import Run
from runbound.reference.broken import CountsOnlyTerminalStore, EvictsActiveStore
from runbound.reference.memory import Changes, MemoryRunStore
from runbound.soak import (
    STORES,
    Lab,
    Maker,
    Result,
    malformed_calls,
    redis_kills,
    redis_stalls,
    sqlite_kills,
    threads_soak,
    unfinished_policy,
    unfinished_starts,
)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """SQLite files in a directory of their own and one redis-server, for the module."""
    made = Lab()
    yield made
    made.close()


def violations(result: Result) -> str:
    return "\n".join(result.violations)


# --- 1. SQLite through SIGKILL ----------------------------------------------------------------

def test_sqlite_kills_keep_every_acknowledged_call(tmp_path: Path) -> None:
    """A child doing calls on one file is SIGKILLed mid-workload 5 times; after each kill
    the reopened file is the model's state after the acknowledged calls (or those and
    the one in flight), passes integrity_check, and its counters agree with its rows."""
    result = sqlite_kills(5, tmp_path)
    assert result.ok, violations(result)
    assert result.figures["kills checked"] == 5
    assert result.figures["acknowledged calls"] >= 5  # at least one per kill


def test_sqlite_kills_catch_a_call_acknowledged_before_it_commits(tmp_path: Path) -> None:
    """Children that acknowledge each call before making it are caught: after some kill
    the file lacks a call that was acknowledged."""
    result = sqlite_kills(5, tmp_path, ack_first=True)
    assert any("neither the acknowledged calls" in v for v in result.violations), \
        violations(result)


# --- 2. Redis through SIGKILL and SIGSTOP ------------------------------------------------------

def test_redis_server_kills_lose_nothing_acknowledged(lab: Lab) -> None:
    """The server (append-only, fsync always) is SIGKILLed twice under a writer whose
    client retries, and restarted on its files, once at once and once after the writer
    gave up on its call: the store equals the model after the acknowledged calls each
    time, every result equal to the model's, the call given up found applied or not."""
    result = redis_kills(2, lab.server)
    assert result.ok, violations(result)
    assert result.figures["kills"] == 2 and result.figures["calls OutcomeUnknown"] >= 1
    assert result.figures["acknowledged calls"] >= 2


def test_redis_stalled_server_applies_no_retry_twice(lab: Lab) -> None:
    """The server is SIGSTOPped under 4 writers whose client times out and re-sends:
    sequence numbers stay consecutive and each buffer holds exactly the acknowledged
    events. The part fails by itself if no call was re-sent (it would prove nothing)."""
    result = redis_stalls(1, lab.server, stall_seconds=0.4)
    assert result.ok, violations(result)
    assert result.figures["script calls re-sent by retries"] > 0


# --- 3. threads on the real clock ---------------------------------------------------------------

@pytest.mark.parametrize("store", STORES)
def test_threads_keep_every_bound_and_every_active_run(lab: Lab, store: str) -> None:
    """8 threads of random calls for about a second (at least 50 calls each, 20 samples),
    the store's worker running: every sample within the caps, no held run lost but by
    its lease, only typed errors, no worker left."""
    result = threads_soak(lab.maker(store), store, 1.0)
    assert result.ok, violations(result)
    assert result.figures["calls"] >= 8 * 50 and result.figures["samples"] >= 20


@pytest.mark.parametrize(("broken", "seen"), [
    (EvictsActiveStore, "active run"),
    (CountsOnlyTerminalStore, "I3"),
])
def test_threads_catch_a_store_that_breaks_a_bound(broken: Maker, seen: str) -> None:
    """A store whose cap evicts active runs, and one whose admission control counts the
    wrong runs, are caught by the threads or the sampler."""
    result = threads_soak(broken, "broken", 1.0)
    assert any(seen in v for v in result.violations), violations(result)


# --- 4. malformed calls ---------------------------------------------------------------------------

@pytest.mark.parametrize("store", STORES)
def test_malformed_calls_are_typed_and_change_nothing(lab: Lab, store: str) -> None:
    """1,000 calls with bad arguments in every position, among valid ones: each refused
    with the model's error and rule, the store (and its file or keys) unchanged."""
    result = malformed_calls(lab.maker(store, durable=False), store, 1_000, raw=lab.raw)
    assert result.ok, violations(result)
    assert result.figures["malformed calls"] == 1_000
    assert result.figures["valid calls between them (all equal to the model's)"] > 0


class KeepsAnyPayload(MemoryRunStore):
    """Planted defect: any payload is kept as its str(), a lone surrogate as it is."""

    def append_event(self, run_id: str, payload: object) -> int:
        text = payload if isinstance(payload, str) else str(payload)
        return super().append_event(run_id, text.encode("utf-8", "replace").decode())


def test_malformed_calls_catch_a_store_that_keeps_a_bad_payload() -> None:
    result = malformed_calls(KeepsAnyPayload, "broken", 300)
    assert any("accepted" in v and "append_event" in v for v in result.violations), \
        violations(result)
    assert any("changed the store" in v for v in result.violations), violations(result)


# --- 5. runs that never finish -------------------------------------------------------------------

@pytest.mark.parametrize("store", STORES)
def test_unfinished_starts_stay_within_the_bound(lab: Lab, store: str) -> None:
    """10,000 starts that never finish, under a lease and caps for 1,000 runs: len()
    within the bound after every start (every 10th on Redis), none refused; for the
    memory store, traced memory flat once full (growth under 5% of the footprint)."""
    result = unfinished_starts(lab.maker(store, durable=False), store, 10_000, 1_000,
                               window=500, check_every=1 if store != "redis" else 10,
                               trace_memory=store == "memory", footprint=lab.footprint)
    assert result.ok, violations(result)
    bound = unfinished_policy(1_000).size_bound
    assert result.figures["largest len() / bound"] == f"1,000 / {bound:,}"
    if store == "memory":
        footprint, growth = result.figures["memory"]
        assert footprint > 0 and growth < footprint / 20, (footprint, growth)


class NoTerminalCap(MemoryRunStore):
    """Planted defect: the terminal cap is never enforced."""

    def _enforce_cap(self, changes: Changes | None = None) -> tuple[str, ...]:
        return ()


class KeepsEveryRun(MemoryRunStore):
    """Planted defect: a history of every run started, never trimmed."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        super().__init__(policy, clock)
        self.history: list[Run] = []

    def start(self, run_id: str) -> Run:
        run = super().start(run_id)
        self.history.append(run)
        return run


def test_unfinished_starts_catch_a_missing_cap_and_a_leak() -> None:
    unbounded = unfinished_starts(NoTerminalCap, "broken", 3_000, 500, window=250)
    assert any("the bound is" in v for v in unbounded.violations), violations(unbounded)
    leaky = unfinished_starts(KeepsEveryRun, "broken", 10_000, 1_000, window=500,
                              trace_memory=True)
    footprint, growth = leaky.figures["memory"]
    assert leaky.ok and growth >= footprint / 20, (footprint, growth)

