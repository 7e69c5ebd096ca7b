"""`make bench`: every performance figure of runbound, in one run, made to be trusted on a
shared machine.

- Each figure is measured in CPU time where the work is this process's (`time.thread_time`:
  other processes and our own idle waits do not count), in wall time only where the work
  or its wait is elsewhere (a Redis server, fsync, a lock held); the table says which.
- Each figure is measured over several rounds (`ROUNDS`), each long enough to dwarf the
  clock's resolution, and reported as the best and the median round.
- A store and its baselines run in the same rounds, one after another (the order rotated
  each round), so a round slowed by a neighbour slows them all: their ratio (of the best
  rounds) is the figure to read. Absolute times vary by machine and load; ratios much less.
- A goal is a ratio not to exceed, or a rate to reach; the table says met, or missed and by
  how much.

Speed and memory goals live here, never in timed tests. To add a figure, write one
function returning its rows (`ratio_row`, `rate_row`) and add it to `FIGURES`. Results:
out/bench.json, and out/bench.md (the table the README shows).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runbound.model import spec
from runbound.model.check import explore, explore_kernel, linearizability
from runbound.model.check.explore import World
from runbound.model.check.linearizability import (
    _budget,
    check_history,
    partition,
    plain_search,
)
from runbound.model.check.linsearch import plain, search_parts
from runbound.model.check.log import LogVerdict, PlainChecker, check_log
from runbound.model.check.stateful import machine_for
from runbound.model.clock import VirtualClock
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.records import Run
from runbound.model.sim.simulate import ModelEngine, StoreEngine, simulate
from runbound.model.sim.workload import LogNormal, Poisson, Workload
from runbound.record import record, recorded
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis import RedisRunStore
from runbound.reference.redis_server import RedisServer
from runbound.reference.seeds import s1, s1_adapter
from runbound.reference.sqlite import SqliteRunStore

SIZES = (1_000, 10_000, 100_000)
#: rounds per figure: best and median of these
ROUNDS = 7
#: start+run+finish cycles per round, per contender
CYCLES = 2_000
#: the two clocks a figure may be measured with
CPU, WALL = "cpu", "wall"
_CLOCKS: dict[str, Callable[[], float]] = {CPU: time.thread_time, WALL: time.perf_counter}

Row = dict[str, Any]


# --- measuring ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """Seconds per operation, one per round."""

    rounds: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.rounds)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)


def side_by_side(contenders: dict[str, Callable[[], int]], rounds: int = ROUNDS,
                 clock: str = CPU) -> dict[str, Sample]:
    """Run each contender once per round, all in the same rounds, the order rotated each
    round (so none always runs first, on a cold cache, or last). A contender does its
    batch and returns how many operations it made; the figure is seconds per operation."""
    read = _CLOCKS[clock]
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            began = read()
            ops = contenders[name]()
            times[name].append((read() - began) / ops)
    return {name: Sample(tuple(t)) for name, t in times.items()}


def ratio_row(group: str, case: str, clock: str, subject: str, ours: Sample,
              baseline: str, theirs: Sample, *, goal: float | None = None,
              unit: str = "s", why: str = "", **extra: Any) -> Row:
    """A figure against a baseline; `goal`: the ratio (best over best) not to exceed."""
    return {"group": group, "case": case, "clock": clock, "subject": subject,
            "subject_s": ours.best, "subject_median": ours.median, "baseline": baseline,
            "baseline_s": theirs.best, "baseline_median": theirs.median,
            "ratio": ours.best / theirs.best, "goal": goal, "unit": unit, "why": why,
            "rounds": len(ours.rounds), **extra}


def rate_row(case: str, clock: str, values: Iterable[float], unit: str,
             goal: float | None, *, why: str = "", **extra: Any) -> Row:
    """A rate (higher is better), one value per round, against the rate its issue set."""
    got = tuple(values)
    return {"group": "checkers", "case": case, "clock": clock, "value": max(got),
            "median": statistics.median(got), "rounds": len(got), "unit": unit,
            "goal": goal, "why": why, **extra}


def verdict(row: Row) -> str:
    """'met', or 'missed' and by how much; empty without a goal."""
    goal = row.get("goal")
    if goal is None:
        return ""
    if "ratio" in row:
        met = row["ratio"] <= goal
        return (f"<= {goal:g}x: met" if met
                else f"<= {goal:g}x: missed, {row['ratio'] / goal:.3g}x over")
    met = row["value"] >= goal
    return (f">= {goal:,.0f} {row['unit']}: met" if met
            else f">= {goal:,.0f} {row['unit']}: missed, at {row['value'] / goal:.1%} of it")


# --- the baselines -------------------------------------------------------------------------

class DictUnderLock:
    """The floor: a plain dict under a lock, no retention at all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str, float]] = {}

    def set(self, run_id: str, status: str, now: float) -> None:
        with self._lock:
            self._runs[run_id] = (status, now)

    def newest(self, limit: int) -> list[tuple[str, float]]:
        with self._lock:  # what a registry without an index must do: sort everything
            return sorted(self._runs.values(), key=lambda r: r[1], reverse=True)[:limit]

    def expired(self, now: float, ttl: float) -> list[str]:
        with self._lock:
            return [k for k, (_, t) in self._runs.items() if now >= t + ttl]


class FrozenRunsUnderLock:
    """The least a store returning frozen `Run` values can do: per call a lock, a clock
    reading, a new `Run`, one dict store; no argument check, no index, no retention.
    MemoryRunStore over it is what the spec's checks and indexes cost; it over the dict is
    what the API's frozen value costs (a frozen dataclass sets each field through
    `object.__setattr__`), a cost no store of this API escapes."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._runs: dict[str, Run] = {}
        self._seq = 0

    def start(self, run_id: str) -> Run:
        with self._lock:
            now = self._clock()
            self._seq += 1
            run = self._runs[run_id] = Run(run_id, Status.PENDING, now, now, None, (), 0,
                                           self._seq)
            return run

    def transition(self, run_id: str, status: Status) -> Run:
        with self._lock:
            now = self._clock()
            old = self._runs[run_id]
            run = self._runs[run_id] = Run(run_id, status, old.created_at, now,
                                           now if status.terminal else None, old.events,
                                           old.dropped_events, old.seq)
            return run


class TTLCacheUnderLock:
    """What a user would pick instead: cachetools.TTLCache (a TTL, and a size cap that
    evicts the least recently used), under a lock, as its documentation says to share it
    between threads. It keeps no order to list by and no lifecycle."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float]) -> None:
        from cachetools import TTLCache

        self._lock = threading.Lock()
        self._cache: TTLCache[str, tuple[str, float]] = TTLCache(size, ttl, timer=clock)

    def set(self, run_id: str, status: str, now: float) -> None:
        with self._lock:
            self._cache[run_id] = (status, now)


# --- MemoryRunStore against the S1 replica, a dict and TTLCache, at each size -----------

def filled(n: int, ttl: float | None = None, old: int = 0
           ) -> tuple[MemoryRunStore, s1.RunStore, DictUnderLock, VirtualClock]:
    """Three stores holding n finished runs (the first `old` finished long ago)."""
    clock = VirtualClock(0.0)
    memory = MemoryRunStore(Policy(max_terminal=n, ttl=ttl, sweep=SweepMode.BACKGROUND),
                            clock)
    seed = s1.RunStore(max_runs=n, ttl_seconds=ttl, clock=clock)
    plain = DictUnderLock()
    records = []
    for i in range(n):
        if i == old:
            clock.advance(10_000.0)
        rid = f"run-{i}"
        memory.start(rid)
        memory.transition(rid, Status.FAILED)
        records.append(s1.RunRecord(run_id=rid, status="failed", created_at=clock(),
                                    updated_at=clock()))
        plain.set(rid, "failed", clock())
        clock.advance(0.001)
    s1_adapter.fill(seed, records)  # as S1's writes would leave it, without their n² time
    return memory, seed, plain, clock


def _fresh_ids() -> Callable[[int], list[str]]:
    """A batch of ids never used before: each round starts new runs."""
    batches = itertools.count()
    return lambda k: [f"new-{next(batches)}-{i}" for i in range(k)]


def bench_lifecycle(n: int) -> list[Row]:
    """start+run+finish on a full store (each finish evicts the oldest: it stays at n),
    with the TTL and cap a user would set, against the same cycle on each baseline."""
    # the real clock, the one a user has: every contender reads it on each call
    clock = time.monotonic
    memory = MemoryRunStore(Policy(ttl=3600.0, max_terminal=n), clock)
    seed = s1.RunStore(max_runs=n, ttl_seconds=3600.0, clock=clock)
    plain = DictUnderLock()
    cache = TTLCacheUnderLock(n, 3600.0, clock)
    records = []
    for i in range(n):
        rid = f"run-{i}"
        memory.start(rid)
        memory.transition(rid, Status.FAILED)
        records.append(s1.RunRecord(run_id=rid, status="failed", created_at=clock(),
                                    updated_at=clock()))
        plain.set(rid, "failed", clock())
        cache.set(rid, "failed", clock())
    s1_adapter.fill(seed, records)
    ids = _fresh_ids()
    # S1 sorts everything on each put: fewer cycles keep its rounds short at 100k
    seed_cycles = max(3, CYCLES * 100 // n)

    def ours() -> int:
        for rid in ids(CYCLES):
            memory.start(rid)
            memory.transition(rid, Status.RUNNING)
            memory.transition(rid, Status.COMPLETED)
        return CYCLES

    def theirs() -> int:  # the server's path: put_run, then update_run twice
        for rid in ids(seed_cycles):
            seed.put_run(seed.new_record(rid))
            seed.update_run(rid, status="processing")
            seed.update_run(rid, status="completed")
        return seed_cycles

    def floor() -> int:
        for rid in ids(CYCLES):
            plain.set(rid, "pending", clock())  # a registry stamps its writes
            plain.set(rid, "running", clock())
            plain.set(rid, "completed", clock())
        return CYCLES

    def ttl_cache() -> int:
        for rid in ids(CYCLES):
            cache.set(rid, "pending", 0.0)
            cache.set(rid, "running", 0.0)
            cache.set(rid, "completed", 0.0)
        return CYCLES

    def frozen_floor() -> int:
        for rid in ids(CYCLES):
            frozen.start(rid)
            frozen.transition(rid, Status.RUNNING)
            frozen.transition(rid, Status.COMPLETED)
        return CYCLES

    frozen = FrozenRunsUnderLock(clock)  # grows: it retains nothing less, nothing more
    got = side_by_side({"memory": ours, "s1": theirs, "dict": floor, "ttl": ttl_cache,
                        "frozen": frozen_floor})
    case = f"start+run+finish at {n:,} (TTL and cap)"
    why = ("a store returning frozen Runs costs at least the frozen-Run floor (a lock, a "
           "clock reading, a new Run, one dict store), itself about 3x the dict (see its "
           "row); above that floor each call checks its arguments and keeps the indexes "
           "(id, seq, status, the TTL/cap heap) and the cap")
    return [ratio_row("stores", case, CPU, "MemoryRunStore", got["memory"], "S1 replica",
                      got["s1"]),
            ratio_row("stores", case, CPU, "MemoryRunStore", got["memory"],
                      "dict under a lock", got["dict"], goal=3.0, why=why),
            ratio_row("stores", case, CPU, "MemoryRunStore", got["memory"],
                      "cachetools.TTLCache under a lock", got["ttl"], goal=1.0, why=why),
            ratio_row("stores", case, CPU, "MemoryRunStore", got["memory"],
                      "frozen-Run floor", got["frozen"]),
            ratio_row("stores", case, CPU, "frozen-Run floor", got["frozen"],
                      "dict under a lock", got["dict"]),
            ratio_row("stores", case, CPU, "frozen-Run floor", got["frozen"],
                      "cachetools.TTLCache under a lock", got["ttl"])]


def bench_listing(n: int) -> list[Row]:
    memory, seed, plain, _ = filled(n)
    calls, floor_calls = 200, max(2, 20_000 // n)

    def ours() -> int:
        for _ in range(calls):
            memory.list_runs(50)
        return calls

    def theirs() -> int:
        for _ in range(floor_calls):
            seed.list_runs(50)
        return floor_calls

    def floor() -> int:
        for _ in range(floor_calls):
            plain.newest(50)
        return floor_calls

    got = side_by_side({"memory": ours, "s1": theirs, "dict": floor})
    case = f"list_runs(limit=50) of {n:,}"
    rows = [ratio_row("stores", case, CPU, "MemoryRunStore", got["memory"], name,
                      got[key]) for key, name in (("s1", "S1 replica"),
                                                  ("dict", "dict under a lock"))]
    # how long one listing keeps every other call out (wall: the lock is held in time)
    timed_m, timed_s = memory.wrap_lock(TimedLock), s1_adapter.wrap_lock(seed, TimedLock)
    side_by_side({"memory": ours, "s1": theirs}, rounds=3, clock=WALL)
    rows.append(ratio_row("stores", f"lock held by list_runs(50) at {n:,} (median)", WALL,
                          "MemoryRunStore", Sample((statistics.median(timed_m.held),)),
                          "S1 replica", Sample((statistics.median(timed_s.held),))))
    return rows


def bench_prune(n: int) -> list[Row]:
    """One prune, 1% of the runs finished long ago and past a TTL of one hour: a prune
    changes the store, so each round gets fresh stores (filled outside the timing)."""
    def one_round() -> dict[str, Sample]:
        memory, seed, plain, clock = filled(n, ttl=3600.0, old=max(1, n // 100))
        return side_by_side({"memory": lambda: (memory.prune(), 1)[1],
                             "s1": lambda: (seed.prune_expired(), 1)[1],
                             "dict": lambda: (plain.expired(clock(), 3600.0), 1)[1]},
                            rounds=1)

    times: dict[str, list[float]] = {"memory": [], "s1": [], "dict": []}
    for _ in range(3):
        for key, sample in one_round().items():
            times[key].append(sample.best)
    ours = Sample(tuple(times["memory"]))
    case = f"prune expiring 1% of {n:,}"
    return [ratio_row("stores", case, CPU, "MemoryRunStore", ours, name,
                      Sample(tuple(times[key])))
            for key, name in (("s1", "S1 replica"), ("dict", "dict under a lock"))]


class TimedLock:
    """Wraps a store's lock to measure how long each `with lock:` holds it."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.held: list[float] = []
        self._since = 0.0

    def __enter__(self) -> None:
        self._lock.acquire()
        self._since = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.held.append(time.perf_counter() - self._since)
        self._lock.release()


def bench_bytes(n: int = 10_000) -> list[Row]:
    """Bytes per retained finished run (tracemalloc): the store's record and indexes,
    against S1's record in a dict and a bare tuple in a dict."""
    def measure(fill: Callable[[], object]) -> Sample:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
        return Sample((used / n,))

    def ours() -> object:
        store = MemoryRunStore(Policy(max_terminal=n), VirtualClock(0.0))
        for i in range(n):
            store.start(f"run-{i}")
            store.transition(f"run-{i}", Status.FAILED)
        return store

    def seed() -> object:
        return {f"run-{i}": s1.RunRecord(f"run-{i}", "failed", created_at=float(i),
                                         updated_at=float(i)) for i in range(n)}

    def plain() -> object:
        return {f"run-{i}": ("failed", float(i)) for i in range(n)}

    mine = measure(ours)
    return [ratio_row("memory", f"bytes per retained run, {n:,} runs", "tracemalloc",
                      "MemoryRunStore", mine, baseline, measure(fill), unit="bytes")
            for baseline, fill in (("S1 replica", seed), ("dict under a lock", plain))]


# --- the durable stores --------------------------------------------------------------------

DURABLE_RUNS = 500


def _sqlite_filled(path: str, n: int, clock: VirtualClock) -> Any:
    """A SqliteRunStore holding n finished runs, written in one transaction (as n
    start+finish calls would leave them: the counts kept by the schema's triggers)."""

    store = SqliteRunStore(Policy(max_terminal=n), clock, path)
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO runs VALUES (?, ?, 'failed', 0, 0, 0, '[]', 0)",
                   ((f"run-{i}", i + 1) for i in range(n)))
    db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (n + 1,))
    db.execute("COMMIT")
    db.close()
    return SqliteRunStore(Policy(max_terminal=n), clock, path)


def bench_sqlite_sizes() -> list[Row]:
    """start+run+finish (one transaction per call, WAL, synchronous=FULL) with 1k, 10k and
    100k runs retained, all in the same rounds: the cost per call must be flat (CPU: the
    fsync waits are the disk's, and would drown the store's own cost)."""
    clock = VirtualClock(1.0)
    ids = _fresh_ids()
    with tempfile.TemporaryDirectory() as tmp:
        stores = {n: _sqlite_filled(f"{tmp}/{n}.db", n, clock) for n in SIZES}

        def cycle(n: int) -> Callable[[], int]:
            def run() -> int:
                store = stores[n]
                for rid in ids(DURABLE_RUNS):
                    store.start(rid)
                    store.transition(rid, Status.RUNNING)
                    store.transition(rid, Status.COMPLETED)
                return DURABLE_RUNS * 3
            return run

        got = side_by_side({str(n): cycle(n) for n in SIZES}, rounds=5)
        for store in stores.values():
            store.close()
    first = str(SIZES[0])
    return [ratio_row("durable", f"SqliteRunStore: a call of start+run+finish at {n:,} "
                      "retained", CPU, f"at {n:,}", got[str(n)], f"at {SIZES[0]:,}",
                      got[first], goal=1.5,
                      why="flat means O(log n): indexed retention, counts kept by "
                          "triggers") for n in SIZES[1:]]


def bench_sqlite() -> list[Row]:
    """start+run+finish, one transaction per call, same file settings (WAL, FULL), against
    sqlite3 making the same writes: wall time, fsync included, as a user waits for it."""

    ids = _fresh_ids()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteRunStore(Policy(max_terminal=DURABLE_RUNS), VirtualClock(0.0),
                               f"{tmp}/store.db")

        def ours() -> int:
            for rid in ids(DURABLE_RUNS):
                store.start(rid)
                store.transition(rid, Status.RUNNING)
                store.transition(rid, Status.COMPLETED)
            return DURABLE_RUNS

        raw = sqlite3.connect(f"{tmp}/raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT, t REAL)")

        def driver() -> int:
            for rid in ids(DURABLE_RUNS):
                for sql in ("INSERT INTO runs VALUES (?, 'pending', 0)",
                            "UPDATE runs SET status='running' WHERE run_id=?",
                            "UPDATE runs SET status='completed' WHERE run_id=?"):
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute(sql, (rid,))
                    raw.execute("COMMIT")
            return DURABLE_RUNS

        got = side_by_side({"ours": ours, "driver": driver}, rounds=3, clock=WALL)
        store.close()
        raw.close()
    return [ratio_row("durable", "start+run+finish (one transaction per call, WAL, "
                      "synchronous=FULL)", WALL, "SqliteRunStore", got["ours"],
                      "sqlite3, same writes", got["driver"])]


def bench_redis() -> list[Row]:
    """start+run+finish: one Lua script call per operation against one HSET per write
    (wall time: the work is the server's)."""
    import redis as redis_py


    try:
        server = RedisServer()
    except RuntimeError:
        return []  # no redis-server: `make bench` runs bootstrap, which installs one
    ids = _fresh_ids()
    try:
        store = RedisRunStore(Policy(max_terminal=DURABLE_RUNS), VirtualClock(0.0),
                              url=server.url, prefix="bench:{a}:")
        client = redis_py.Redis.from_url(server.url)

        def ours() -> int:
            for rid in ids(DURABLE_RUNS):
                store.start(rid)
                store.transition(rid, Status.RUNNING)
                store.transition(rid, Status.COMPLETED)
            return DURABLE_RUNS

        def driver() -> int:
            for rid in ids(DURABLE_RUNS):
                for status in ("pending", "running", "completed"):
                    client.hset(f"raw:{{b}}:{rid}", mapping={"status": status, "t": 0})
            return DURABLE_RUNS

        got = side_by_side({"ours": ours, "driver": driver}, rounds=3, clock=WALL)
        store.close()
        client.close()
    finally:
        server.stop()
    return [ratio_row("durable", "start+run+finish (appendfsync always)", WALL,
                      "RedisRunStore", got["ours"], "redis-py HSET, same writes",
                      got["driver"])]


# --- the model and the checkers: rates against their goals ------------------------------

def spec_workload(calls: int, seed: int = 0) -> list[tuple[str, tuple[object, ...]]]:
    """A checker's diet: every kind of call on eight ids, many of them refused."""
    rng = random.Random(seed)
    ids = [f"run-{i}" for i in range(8)]
    drawn: list[tuple[str, tuple[object, ...]]] = []
    for _ in range(calls):
        rid, k = rng.choice(ids), rng.random()
        drawn.append(("start", (rid,)) if k < 0.25
                     else ("transition", (rid, rng.choice(list(Status)))) if k < 0.5
                     else ("heartbeat", (rid,)) if k < 0.6
                     else ("append_event", (rid, "e")) if k < 0.7
                     else ("get", (rid,)) if k < 0.85
                     else ("list_runs", (5,)) if k < 0.95
                     else ("prune", ()))
    return drawn


def bench_spec() -> list[Row]:
    """spec.apply, the model of one call, that every checker runs on every step."""

    drawn = spec_workload(20_000)
    policy = Policy(ttl=5.0, max_terminal=4, max_active=4, max_events_per_run=3,
                    stale_after=10.0)

    def calls() -> int:
        state, now = spec.initial(policy), 0.0
        for op, args in drawn:
            now += 0.25
            state, _ = spec.apply(state, op, args, now)
        return len(drawn)

    got = side_by_side({"spec": calls})["spec"]
    return [rate_row("spec.apply: calls per second (mixed calls on 8 ids, TTL, caps, "
                     "lease)", CPU, (1 / s for s in got.rounds), "calls/s", None)]




def bench_stateful() -> list[Row]:
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test


    steps = [0]
    base = machine_for(MemoryRunStore, name="BenchMachine")

    class Counting(base):  # type: ignore[valid-type,misc]
        def teardown(self) -> None:
            steps[0] += len(self.program)
            super().teardown()

    # process time: the machine runs the store's worker in threads of its own
    began = time.process_time()
    run_state_machine_as_test(Counting, settings=settings(
        max_examples=200, stateful_step_count=25, derandomize=True, database=None,
        deadline=None))
    seconds = time.process_time() - began
    return [rate_row("stateful check on MemoryRunStore: calls per second", CPU,
                     (steps[0] / seconds,), "calls/s", None, calls=steps[0],
                     seconds=seconds)]







# --- the checkers' figures: one measurement each (their rounds are inside) -------------

def ratio1(group: str, case: str, subject: str, subject_s: float, baseline: str,
           baseline_s: float, *, clock: str = CPU, **extra: Any) -> Row:
    """A ratio row from one figure each (a checker's own best of its rounds)."""
    return ratio_row(group, case, clock, subject, Sample((subject_s,)), baseline,
                     Sample((baseline_s,)), **extra)


def rate1(case: str, value: float, unit: str, goal: float | None, *, clock: str = CPU,
          **extra: Any) -> Row:
    """A rate row from one figure (higher is better where it has a goal)."""
    extra.pop("median", None)
    extra.pop("rounds", None)
    return rate_row(case, clock, (value,), unit, goal, **extra)


#: a world of ten times the default's states (about 230,000): the clock runs to 5, not 2
TEN_TIMES_HORIZON = 5

#: what `runbound check-log` must do on a 1M-call log (issue 14, item 5): CPU seconds
CHECK_LOG_GOAL = 60.0


def bench_explorer(rounds: int = 5) -> list[dict[str, Any]]:
    """The kernel against its oracle on the default world, CPU time, side by side (and
    the kernel as plain Python, what a wheel without the compiled module runs), the
    kernel's best and median of `rounds` (a fifth of a second each: one round is at the
    mercy of the machine's other load; the oracle's ten seconds once); then the kernel on
    a world ten times the default (its goal: under a minute)."""

    def cpu(run: Callable[[], Any]) -> tuple[float, Any]:
        began = time.process_time()
        result = run()
        return time.process_time() - began, result

    world = World()
    oracle_s, oracle = cpu(lambda: explore.explore(world))
    kernel_runs: list[float] = []
    pure_runs: list[float] = []
    for _ in range(rounds):
        kernel_s, kernel = cpu(lambda: explore_kernel.explore(world))
        kernel_runs.append(kernel_s)
        if len(pure_runs) < 2:
            pure_runs.append(cpu(lambda: explore_kernel.explore(world, pure=True))[0])
    kernel_s, kernel_median, pure_s = (min(kernel_runs), statistics.median(kernel_runs),
                                       min(pure_runs))
    engine = explore_kernel.engine()
    states = oracle.states
    assert kernel.states == states and kernel.transitions == oracle.transitions
    big = World(horizon=TEN_TIMES_HORIZON)
    big_s, big_result = cpu(lambda: explore_kernel.explore(big))
    return [
        ratio1("checkers", f"explore the default world ({states:,} states), CPU",
                  f"kernel ({engine})", kernel_s, "the spec-driven oracle", oracle_s),
        ratio1("checkers", f"explore the default world ({states:,} states), CPU",
                  "kernel (plain Python)", pure_s, "the spec-driven oracle", oracle_s),
        rate1(f"explore: states per second, default world, kernel ({engine}), CPU, "
                 f"best of {rounds} (median {states / kernel_median:,.0f})",
                 states / kernel_s, "states/s", 100_000.0, states=states,
                 transitions=kernel.transitions, seconds=kernel_s,
                 median_seconds=kernel_median, rounds=rounds, clock="cpu"),
        rate1("explore: states per second, default world, oracle, CPU",
                 states / oracle_s, "states/s", None, seconds=oracle_s),
        rate1(f"explore: seconds for a world ten times the default "
                 f"({big_result.states:,} states, horizon {TEN_TIMES_HORIZON}), kernel "
                 f"({engine}), CPU (goal: under 60 s)", big_s, "s", None,
                 states=big_result.states,
                 complete=big_result.complete),
    ]


def bench_simulator() -> list[dict[str, Any]]:
    """Lifecycle events per CPU second (process time: the machine's other load does not
    count) of each engine, on one workload and policy (a TTL and a cap); the best and
    the median of the rounds. The model and the reference store run a smaller slice of
    the same workload: they are far slower, which is why the fast engine exists."""

    policy = Policy(ttl=600, max_terminal=1000)
    rows = []
    engines: tuple[tuple[str, int, int, Callable[[], Any], float | None], ...] = (
        ("fast engine", 300_000, 5, lambda: None, 1_000_000.0),
        ("model engine", 1_000, 2, lambda: ModelEngine(policy), None),
        ("MemoryRunStore", 3_000, 3, lambda: StoreEngine(MemoryRunStore, policy), None))
    for name, runs, rounds, engine, goal in engines:
        work = Workload(runs=runs, arrivals=Poisson(10.0), durations=LogNormal(30, 1.0),
                        read_delay=LogNormal(60, 1.5))
        rates, events = [], 0
        for _ in range(rounds):
            each = engine()
            began = time.process_time()
            events = simulate(work, policy, engine=each, sample_every=600).events
            rates.append(events / (time.process_time() - began))
            if isinstance(each, StoreEngine):
                each.close()
        rows.append(rate1(f"simulator, {name}: lifecycle events per CPU second "
                             f"({runs:,} runs; median {statistics.median(rates):,.0f})",
                             max(rates), "events/s", goal, events=events,
                             rounds=rounds, median=statistics.median(rates), clock="cpu"))
    return rows


def bench_histories(rounds: int = 3) -> list[dict[str, Any]]:
    """Record 8 threads x 10k calls on MemoryRunStore, then check the history with the
    fast search and with the plain one (its oracle, the search before issue 13), in
    alternate rounds: CPU seconds (worker processes' included), best and median. With
    caps (one history: the goal, < 3 s) and without caps or listings (split per run id;
    parts too big to settle at once go to worker processes)."""

    rows = []
    for label, policy, ops in (
            ("caps, every call: one history", Policy(max_terminal=2, max_active=2,
                                                     max_events_per_run=2), None),
            ("no caps, single-run calls: per run id", Policy(max_events_per_run=2),
             ("start", "start", "transition", "transition", "heartbeat", "append_event",
              "get"))):
        began = time.perf_counter()
        calls, now = linearizability.record(MemoryRunStore, policy, random.Random(0), 8,
                                            10_000, ops)
        recorded = time.perf_counter() - began
        fast: list[float] = []
        plain: list[float] = []
        for _ in range(rounds):
            began = time.process_time()
            verdict = check_history(policy, calls, now)
            fast.append(time.process_time() - began + verdict.worker_cpu)
            began = time.process_time()
            found = [plain_search(policy, part, now, _budget(None, part))[0]
                     for part in partition(policy, calls)]
            plain.append(time.process_time() - began)
        oracle = "pass" if all(found) else "fail" if False in found else "unknown"
        best = min(fast)
        goal = (f"; goal < 3 s: {'met' if best < 3 else 'not met'}"
                if policy.max_active is not None else "")
        rows.append(ratio1(
            "checkers", f"linearizability, 8 threads x 10k calls ({label}): CPU seconds "
            f"to check, best of {rounds} (fast: {verdict.verdict}, plain: {oracle}){goal}",
            "fast search", best, "plain search", min(plain), recorded_s=recorded,
            fast_median_s=statistics.median(fast), plain_median_s=statistics.median(plain),
            verdict=verdict.verdict, oracle=oracle, explored=verdict.explored))
        if policy.max_active is not None:
            rows.append(bench_parts(policy, calls, now, rounds))
    return rows


def record_log(path: Path, calls: int, threads: int, switch: float | None = None) -> None:
    """A log of `calls` calls recorded from MemoryRunStore under `threads` threads (caps
    and a TTL on a virtual clock that moves). `switch`: the interpreter's thread switch
    interval while recording (a tiny one makes threads interleave inside calls: many
    calls at once, the frontier's worst case)."""
    import sys

    before = sys.getswitchinterval()
    if switch is not None:
        sys.setswitchinterval(switch)
    try:
        _record_log(path, calls, threads)
    finally:
        sys.setswitchinterval(before)


def _record_log(path: Path, calls: int, threads: int) -> None:
    policy = Policy(ttl=5.0, max_terminal=16, max_active=16, max_events_per_run=2)
    clock = VirtualClock(0.0)
    store, wrapped = recorded(MemoryRunStore)(policy, clock)
    with record(store, path, clock=wrapped) as live:
        def traffic(seed: int) -> None:
            rng = random.Random(seed)
            for i in range(calls // threads):
                rid = f"r{rng.randrange(64)}"
                op = rng.choice(("start", "transition", "transition", "get",
                                 "heartbeat", "append_event"))
                if i % 64 == 0:
                    clock.advance(0.5)
                try:
                    if op == "transition":
                        live.transition(rid, rng.choice(("running", "completed")))
                    elif op == "append_event":
                        live.append_event(rid, "e")
                    else:
                        getattr(live, op)(rid)
                except Exception:  # a refusal is a result; it is in the log
                    pass
        workers = [threading.Thread(target=traffic, args=(s,)) for s in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def checked_log(path: Path, calls: int, threads: int, attempts: int,
                switch: float | None = None) -> tuple[int, float, LogVerdict]:
    """Record a log (`record_log`) and check it, again while the verdict is "unknown"
    (see `bench_check_log`), `attempts` times at most: the recordings made, the CPU
    seconds of the last check, and its verdict."""
    tries = 0
    while True:
        record_log(path, calls, threads, switch)
        tries += 1
        began = time.process_time()
        verdict = check_log(path)
        spent = time.process_time() - began
        if verdict.verdict != "unknown" or tries == attempts:
            return tries, spent, verdict


def bench_check_log(calls: int = 1_000_000, threads: int = 8, small: int = 10_000,
                    attempts: int = 3) -> list[dict[str, Any]]:
    """`runbound check-log` on a log of `calls` calls recorded from MemoryRunStore under
    `threads` threads: CPU seconds to check it, against the goal. Side by side, on a log
    of `small` calls recorded the same way but with threads switching every 10 us (many
    calls at once: the plain frontier takes minutes on 100k such calls): the checker
    against its oracle, the plain frontier (`PlainChecker`), and
    the share of the checker's time inside `spec.apply`.

    On a loaded machine a thread can wait for the interpreter's lock in the middle of a
    call while more than `log.MAX_BUFFER` calls return: the check of that log stops
    there ("unknown"), which measures nothing about a whole log. Such a log is recorded
    again, up to `attempts` times; the row says how many it took, and gives the last
    verdict whatever it is."""
    import cProfile
    import pstats

    def cpu(run: Callable[[], Any]) -> tuple[float, Any]:
        began = time.process_time()
        result = run()
        return time.process_time() - began, result

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.log"
        _, fast_s, fast = checked_log(path, small, threads, attempts, switch=1e-5)
        plain_s, oracle = cpu(lambda: check_log(path, checker=PlainChecker))
        if (fast.verdict, fast.calls) != (oracle.verdict, oracle.calls):
            raise AssertionError(f"check-log: the checker says {fast.verdict} at "
                                 f"{fast.calls:,}, its oracle {oracle.verdict} at "
                                 f"{oracle.calls:,}")
        profile = cProfile.Profile()
        profile.enable()
        check_log(path)  # once more, profiled: how much of it is the spec's apply
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        total = max(v[3] for v in stats.values())  # the cumulative time of check_log
        apply_s = next((v[3] for (f, _, name), v in stats.items()
                        if name == "apply" and f.endswith("spec.py")), 0.0)
        tries, whole_s, verdict = checked_log(path, calls, threads, attempts)
        size = path.stat().st_size
    goal = (f"goal {CHECK_LOG_GOAL:.0f} s: met" if whole_s <= CHECK_LOG_GOAL else
            f"goal {CHECK_LOG_GOAL:.0f} s: missed by {whole_s - CHECK_LOG_GOAL:.0f} s")
    return [ratio1("checkers", f"check-log: {fast.calls:,}-call log, {threads} threads "
                      f"switching every 10 us ({fast.verdict}, up to {fast.max_running} "
                      f"calls at once, {fast.max_configurations} configurations; "
                      f"{apply_s / total:.0%} of ours in spec.apply): CPU seconds",
                      "memoised frontier", fast_s, "plain frontier", plain_s),
            rate1(f"check-log: {verdict.calls:,}-call log, {threads} threads "
                     f"({verdict.verdict}, up to {verdict.max_running} calls at once, "
                     f"{verdict.max_configurations} configurations; recorded {tries}x): "
                     f"CPU seconds ({goal})", whole_s, "s", None, bytes=size,
                     max_running=verdict.max_running,
                     max_configurations=verdict.max_configurations, recorded=tries)]


def bench_parts(policy: Policy, calls: list[Any], now: float, rounds: int
                ) -> dict[str, Any]:
    """Two independent parts of 80k calls (the history with caps, twice): searched in
    two worker processes against one after another here. Wall time, the figure a pool
    changes, best of `rounds`, interleaved; on a machine whose cores are busy it cannot
    gain, and shows what the pool costs."""

    part = plain(calls)
    walls: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for workers in (1, 2):
            began = time.perf_counter()
            search_parts(policy, [part, part], now, [10**7, 10**7], workers=workers)
            walls[workers].append(time.perf_counter() - began)
    return ratio1("checkers", "linearizability, two independent parts of 80k calls: "
                     f"wall seconds, best of {rounds}", "2 worker processes", min(walls[2]),
                     "one process", min(walls[1]), clock=WALL)


def _at_each_size(figure: Callable[[int], list[Row]]) -> Callable[[], list[Row]]:
    def each() -> list[Row]:
        return [row for n in SIZES for row in figure(n)]
    each.__name__ = figure.__name__
    return each


#: every figure, in the order of the table: one function each, returning its rows
FIGURES: list[Callable[[], list[Row]]] = [
    _at_each_size(bench_lifecycle), _at_each_size(bench_listing), _at_each_size(bench_prune),
    bench_bytes, bench_sqlite_sizes, bench_sqlite, bench_redis,
    bench_spec, bench_explorer, bench_stateful, bench_simulator, bench_histories,
    bench_check_log,
]


# --- the report -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runbound.bench")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only the figures whose function name contains NAME")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    console = Console(width=160)
    rows: list[Row] = []
    for figure in FIGURES:
        if args.only and not any(name in figure.__name__ for name in args.only):
            continue
        console.print(f"{figure.__name__} ...")
        rows += figure()
    console.print(table(rows))
    args.out.mkdir(exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "bench.md").write_text(markdown(rows))
    console.print(f"wrote {args.out}/bench.json and {args.out}/bench.md")


def table(rows: list[Row]) -> Table:
    out = Table(title="ratio < 1: ours is faster; best of the rounds (median in brackets)")
    for col in ("figure", "clock", "ours", "baseline", "ratio", "goal"):
        out.add_column(col)
    for r in rows:
        cells = _cells(r)
        out.add_row(*cells)
    return out


def markdown(rows: list[Row]) -> str:
    lines = ["Best of the rounds, median in brackets. `cpu`: CPU time of the measuring "
             "thread (process, for the stateful check and linearizability); `wall`: "
             "elapsed time. Ratio: best over best, from the same rounds (< 1: ours is "
             "faster).", "",
             "| figure | clock | ours | baseline | ratio | goal |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    whys = dict.fromkeys(r["why"] for r in rows if "missed" in verdict(r) and r.get("why"))
    if whys:
        lines += ["", "Why the goals missed are missed:", ""]
        lines += [f"- {why}" for why in whys]
    return "\n".join(lines) + "\n"


def _cells(r: Row) -> list[str]:
    if "ratio" in r:
        return [r["case"], r["clock"],
                f"{r['subject']}: {_amount(r, 'subject_s')} ({_amount(r, 'subject_median')})",
                f"{r['baseline']}: {_amount(r, 'baseline_s')} "
                f"({_amount(r, 'baseline_median')})", f"{r['ratio']:.3g}x", verdict(r)]
    return [r["case"], r["clock"], f"{r['value']:,.0f} {r['unit']} ({r['median']:,.0f})",
            "", "", verdict(r)]


def _amount(row: Row, key: str) -> str:
    return f"{row[key]:,.0f} B" if row.get("unit") == "bytes" else _time(row[key])


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.2f} us"


if __name__ == "__main__":
    main()
