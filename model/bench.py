"""`make bench`: every performance figure of runbound, in one run. Each store figure is a
ratio of two things measured side by side here (absolute times vary by machine; ratios
much less); each checker figure is a rate, shown against the goal its issue set.

Speed and memory goals live here, never in timed tests. Results: out/bench.json, and
out/bench.md (the table the README shows).
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from model.clock import VirtualClock
from model.lifecycle import Status
from model.policy import Policy, SweepMode
from reference.memory import MemoryRunStore
from reference.seeds import s1

SIZES = (1_000, 10_000, 100_000)
OPS = 200  # operations timed at each size


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


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def ratio_row(group: str, case: str, subject: str, subject_s: float, baseline: str,
              baseline_s: float, unit: str = "s", **extra: Any) -> dict[str, Any]:
    return {"group": group, "case": case, "subject": subject, "subject_s": subject_s,
            "baseline": baseline, "baseline_s": baseline_s, "ratio": subject_s / baseline_s,
            "unit": unit, **extra}


# --- MemoryRunStore against the S1 replica and a dict, at each size ---------------------

def filled(n: int, ttl: float | None = None, old: int = 0
           ) -> tuple[MemoryRunStore, s1.RunStore, DictUnderLock, VirtualClock]:
    """Three stores holding n finished runs (the first `old` finished long ago)."""
    clock = VirtualClock(0.0)
    memory = MemoryRunStore(Policy(max_terminal=n, ttl=ttl, sweep=SweepMode.BACKGROUND),
                            clock)
    seed = s1.RunStore(max_runs=n, ttl_seconds=ttl, clock=clock)
    plain = DictUnderLock()
    for i in range(n):
        if i == old:
            clock.advance(10_000.0)
        rid = f"run-{i}"
        memory.start(rid)
        memory.transition(rid, Status.FAILED)
        # S1's writes sort or scan everything: fill its dict directly, as its writes would
        seed._runs[rid] = s1.RunRecord(run_id=rid, status="failed",
                                       created_at=clock(), updated_at=clock())
        plain.set(rid, "failed", clock())
        clock.advance(0.001)
    return memory, seed, plain, clock


def bench_stores(n: int) -> list[dict[str, Any]]:
    memory, seed, plain, clock = filled(n)
    ids = [f"new-{i}" for i in range(OPS)]

    def m_life() -> None:  # each finish evicts the oldest: the store stays at n
        for rid in ids:
            memory.start(rid)
            memory.transition(rid, Status.RUNNING)
            memory.transition(rid, Status.COMPLETED)

    def s_life() -> None:  # the server's path: put_run, then update_run twice
        for rid in ids:
            seed.put_run(seed.new_record(rid))
            seed.update_run(rid, status="processing")
            seed.update_run(rid, status="completed")

    def d_life() -> None:
        for rid in ids:
            plain.set(rid, "pending", 0.0)
            plain.set(rid, "running", 0.0)
            plain.set(rid, "completed", 0.0)

    life = {k: best_of(1, f) / OPS for k, f in
            (("memory", m_life), ("s1", s_life), ("dict", d_life))}
    calls = 50
    timed_m, timed_s = TimedLock(memory._lock), TimedLock(seed._lock)
    memory._lock, seed._lock = timed_m, timed_s  # type: ignore[assignment]
    listing = {
        "memory": best_of(3, lambda: [memory.list_runs(50) for _ in range(calls)]) / calls,
        "s1": best_of(3, lambda: [seed.list_runs(50) for _ in range(calls)]) / calls,
        "dict": best_of(3, lambda: [plain.newest(50) for _ in range(5)]) / 5,
    }
    hold_m, hold_s = statistics.median(timed_m.held), statistics.median(timed_s.held)
    # prune: 1% of the runs finished long ago and are past a TTL of one hour
    memory, seed, plain, clock = filled(n, ttl=3600.0, old=max(1, n // 100))
    prune = {"memory": best_of(1, memory.prune), "s1": best_of(1, seed.prune_expired),
             "dict": best_of(1, lambda: plain.expired(clock(), 3600.0))}
    rows = []
    for case, times in ((f"start+run+finish at {n:,}", life),
                        (f"list_runs(limit=50) of {n:,}", listing),
                        (f"prune expiring 1% of {n:,}", prune)):
        rows.append(ratio_row("stores", case, "MemoryRunStore", times["memory"],
                              "S1 replica", times["s1"]))
        rows.append(ratio_row("stores", case, "MemoryRunStore", times["memory"],
                              "dict under a lock", times["dict"]))
    rows.append(ratio_row("stores", f"lock held by list_runs(50) at {n:,} (median)",
                          "MemoryRunStore",
                          hold_m, "S1 replica", hold_s))
    return rows


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


def bench_memory(n: int = 10_000) -> list[dict[str, Any]]:
    """Bytes per retained finished run (tracemalloc): the store's record and indexes,
    against S1's record in a dict and a bare tuple in a dict."""
    def measure(fill: Callable[[], object]) -> float:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = fill()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
        return used / n

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
    return [ratio_row("memory", f"bytes per retained run, {n:,} runs", "MemoryRunStore",
                      mine, baseline, measure(fill), unit="bytes")
            for baseline, fill in (("S1 replica", seed), ("dict under a lock", plain))]


# --- the durable stores against their raw drivers ---------------------------------------

DURABLE_RUNS = 1000


def bench_sqlite() -> dict[str, Any]:
    """start+run+finish, one transaction per call, same file settings (WAL, FULL)."""
    from reference.sqlite import SqliteRunStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteRunStore(Policy(max_terminal=DURABLE_RUNS), VirtualClock(0.0),
                               f"{tmp}/store.db")

        def ours() -> None:
            for i in range(DURABLE_RUNS):
                store.start(f"r{i}")
                store.transition(f"r{i}", Status.RUNNING)
                store.transition(f"r{i}", Status.COMPLETED)

        raw = sqlite3.connect(f"{tmp}/raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT, t REAL)")

        def driver() -> None:
            for i in range(DURABLE_RUNS):
                for sql, args in (("INSERT INTO runs VALUES (?, 'pending', 0)", (f"r{i}",)),
                                  ("UPDATE runs SET status='running' WHERE run_id=?",
                                   (f"r{i}",)),
                                  ("UPDATE runs SET status='completed' WHERE run_id=?",
                                   (f"r{i}",))):
                    raw.execute("BEGIN IMMEDIATE")
                    raw.execute(sql, args)
                    raw.execute("COMMIT")

        mine, theirs = best_of(1, ours), best_of(1, driver)
        store.close()
        raw.close()
    return ratio_row("durable", f"start+run+finish x{DURABLE_RUNS:,} (one transaction per "
                     "call, WAL, synchronous=FULL)", "SqliteRunStore", mine / DURABLE_RUNS,
                     "sqlite3, same writes", theirs / DURABLE_RUNS)


def bench_redis() -> dict[str, Any] | None:
    """start+run+finish: one Lua script call per operation against one HSET per write."""
    import redis as redis_py

    from reference.redis import RedisRunStore
    from reference.redis_server import RedisServer

    try:
        server = RedisServer()
    except RuntimeError:
        return None  # no redis-server: `make bench` runs bootstrap, which installs one
    try:
        store = RedisRunStore(Policy(max_terminal=DURABLE_RUNS), VirtualClock(0.0),
                              url=server.url, prefix="bench:{a}:")
        client = redis_py.Redis.from_url(server.url)

        def ours() -> None:
            for i in range(DURABLE_RUNS):
                store.start(f"r{i}")
                store.transition(f"r{i}", Status.RUNNING)
                store.transition(f"r{i}", Status.COMPLETED)

        def driver() -> None:
            for i in range(DURABLE_RUNS):
                for status in ("pending", "running", "completed"):
                    client.hset(f"raw:{{b}}:r{i}", mapping={"status": status, "t": 0})

        mine, theirs = best_of(1, ours), best_of(1, driver)
        store.close()
        client.close()
    finally:
        server.stop()
    return ratio_row("durable", f"start+run+finish x{DURABLE_RUNS:,} (appendfsync always)",
                     "RedisRunStore", mine / DURABLE_RUNS, "redis-py HSET, same writes",
                     theirs / DURABLE_RUNS)


# --- the checkers: rates against their goals --------------------------------------------

def rate_row(case: str, value: float, unit: str, goal: float | None, **extra: Any
             ) -> dict[str, Any]:
    return {"group": "checkers", "case": case, "value": value, "unit": unit, "goal": goal,
            **extra}


def bench_explorer() -> list[dict[str, Any]]:
    from model.explore import World, explore

    result = explore(World())
    return [rate_row("explore: states per second (default world)",
                     result.states_per_second, "states/s", 100_000.0, states=result.states,
                     transitions=result.transitions, seconds=result.seconds),
            rate_row("explore: transitions per second", result.transitions / result.seconds,
                     "transitions/s", None)]


def bench_stateful() -> dict[str, Any]:
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    from model.stateful import machine_for

    steps = [0]
    base = machine_for(MemoryRunStore, name="BenchMachine")

    class Counting(base):  # type: ignore[valid-type,misc]
        def teardown(self) -> None:
            steps[0] += len(self.trace) - 1
            super().teardown()

    began = time.perf_counter()
    run_state_machine_as_test(Counting, settings=settings(
        max_examples=200, stateful_step_count=25, derandomize=True, database=None,
        deadline=None))
    seconds = time.perf_counter() - began
    return rate_row("stateful check on MemoryRunStore: calls per second",
                    steps[0] / seconds, "calls/s", None, calls=steps[0], seconds=seconds)


def bench_simulator() -> dict[str, Any]:
    from model.simulate import LogNormal, Poisson, Workload, simulate

    work = Workload(runs=300_000, arrivals=Poisson(10.0), durations=LogNormal(30, 1.0),
                    read_delay=LogNormal(60, 1.5))
    began = time.perf_counter()
    m = simulate(work, Policy(ttl=600, max_terminal=1000), sample_every=600)
    seconds = time.perf_counter() - began
    return rate_row("simulator: lifecycle events per second (fast engine)",
                    m.events / seconds, "events/s", 1_000_000.0, events=m.events,
                    seconds=seconds)


def bench_histories() -> list[dict[str, Any]]:
    """Record 8 threads x 10k calls on MemoryRunStore, then check the history: with caps
    (one history) and without caps or listings (split per run id)."""
    from model.linearizability import check_history, record

    rows = []
    for label, policy, ops in (
            ("caps, every call: one history", Policy(max_terminal=2, max_active=2,
                                                     max_events_per_run=2), None),
            ("no caps, single-run calls: per run id", Policy(max_events_per_run=2),
             ("start", "start", "transition", "transition", "heartbeat", "append_event",
              "get"))):
        began = time.perf_counter()
        calls, now = record(MemoryRunStore, policy, random.Random(0), 8, 10_000, ops)
        recorded = time.perf_counter() - began
        began = time.perf_counter()
        verdict = check_history(policy, calls, now)
        seconds = time.perf_counter() - began
        rows.append(rate_row(f"linearizability, 8 threads x 10k calls ({label}): seconds "
                             f"to check ({verdict.verdict})", seconds, "s", None,
                             recorded_s=recorded, verdict=verdict.verdict))
    return rows


# --- the report -------------------------------------------------------------------------

def main() -> None:
    console = Console(width=150)
    rows: list[dict[str, Any]] = []
    for n in SIZES:
        console.print(f"stores at {n:,} runs ...")
        rows += bench_stores(n)
    rows += bench_memory()
    console.print("durable stores ...")
    rows.append(bench_sqlite())
    redis_row = bench_redis()
    if redis_row is not None:
        rows.append(redis_row)
    console.print("checkers ...")
    rows += bench_explorer()
    rows.append(bench_stateful())
    rows.append(bench_simulator())
    rows += bench_histories()

    ratios = Table(title="stores: measured side by side (ratio < 1: ours is faster)")
    for col in ("case", "ours", "baseline", "ratio"):
        ratios.add_column(col)
    for r in rows:
        if "ratio" in r:
            ratios.add_row(r["case"], f"{r['subject']}: {_amount(r, 'subject_s')}",
                           f"{r['baseline']}: {_amount(r, 'baseline_s')}",
                           f"{r['ratio']:.3g}x")
    console.print(ratios)
    rates = Table(title="checkers")
    for col in ("case", "measured", "goal"):
        rates.add_column(col)
    for r in rows:
        if "value" in r:
            goal = "" if r["goal"] is None else (
                f"{r['goal']:,.0f} {r['unit']}: "
                f"{'met' if r['value'] >= r['goal'] else 'not met'}")
            rates.add_row(r["case"], f"{r['value']:,.1f} {r['unit']}", goal)
    console.print(rates)
    out = Path("out")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(rows))
    console.print("wrote out/bench.json and out/bench.md")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| case | ours | baseline | ratio |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {_amount(r, 'subject_s')} | {r['baseline']}: "
              f"{_amount(r, 'baseline_s')} | {r['ratio']:.3g}x |" for r in rows if "ratio" in r]
    lines += ["", "| checker | measured | goal |", "|---|---|---|"]
    lines += [f"| {r['case']} | {r['value']:,.1f} {r['unit']} | "
              f"{'' if r['goal'] is None else format(r['goal'], ',.0f')} |"
              for r in rows if "value" in r]
    return "\n".join(lines) + "\n"


def _amount(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:,.0f} B" if row.get("unit") == "bytes" else _time(row[key])


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


if __name__ == "__main__":
    main()
