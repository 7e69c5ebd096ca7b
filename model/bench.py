"""`make bench`: runbound's speed figures, each a ratio of two things measured side by
side in this one run (absolute numbers vary by machine; ratios much less).

Speed and memory goals live here, never in timed tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from model.clock import VirtualClock
from model.lifecycle import Status
from model.policy import Policy, SweepMode
from reference.memory import MemoryRunStore

SIZES = (1_000, 10_000, 100_000)


class DictUnderLock:
    """The floor: a plain dict under a lock, no retention at all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str, float]] = {}

    def start(self, run_id: str, now: float) -> None:
        with self._lock:
            self._runs[run_id] = ("pending", now)

    def finish(self, run_id: str, now: float) -> None:
        with self._lock:
            self._runs[run_id] = ("completed", now)

    def newest(self, limit: int) -> list[tuple[str, float]]:
        with self._lock:  # what a registry without an index must do: sort everything
            return sorted(self._runs.values(), key=lambda r: r[1], reverse=True)[:limit]


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def bench_lifecycle(n: int) -> dict[str, Any]:
    """start + finish of n runs, under a cap that keeps n/2: the store evicts as it goes."""
    clock = VirtualClock(0.0)
    ids = [f"run-{i}" for i in range(n)]

    def memory() -> None:
        store = MemoryRunStore(Policy(max_terminal=n // 2, ttl=3600.0), clock)
        for rid in ids:
            store.start(rid)
            store.transition(rid, Status.RUNNING)
            store.transition(rid, Status.COMPLETED)

    def floor() -> None:
        d = DictUnderLock()
        for i, rid in enumerate(ids):
            d.start(rid, float(i))
            d.finish(rid, float(i))
            d.finish(rid, float(i))

    repeats = 3 if n <= 10_000 else 1
    m, f = best_of(repeats, memory), best_of(repeats, floor)
    return {"case": f"start+run+finish x{n}", "memory_s": m, "baseline_s": f,
            "baseline": "dict under a lock", "ratio": m / f}


def bench_listing(n: int) -> dict[str, Any]:
    """list_runs(limit=50) on a store of n runs against sorting them all."""
    clock = VirtualClock(0.0)
    store = MemoryRunStore(Policy(), clock)
    d = DictUnderLock()
    for i in range(n):
        store.start(f"run-{i}")
        d.start(f"run-{i}", float(i))
        clock.advance(0.001)
    calls = 200
    m = best_of(3, lambda: [store.list_runs(50) for _ in range(calls)]) / calls
    f = best_of(3, lambda: [d.newest(50) for _ in range(calls // 20 or 1)]) / (calls // 20 or 1)
    return {"case": f"list_runs(limit=50) of {n}", "memory_s": m, "baseline_s": f,
            "baseline": "sort all under a lock", "ratio": m / f}


def bench_prune(n: int) -> dict[str, Any]:
    """One sweep that expires 1% of n terminal runs: indexed (memory) against a scan."""
    clock = VirtualClock(0.0)
    store = MemoryRunStore(Policy(ttl=1.0, sweep=SweepMode.BACKGROUND), clock)
    for i in range(n):
        store.start(f"run-{i}")
        store.transition(f"run-{i}", Status.FAILED)
        if i == n // 100:
            clock.advance(5.0)
    snapshot = {r.run_id: r for r in store.snapshot()}
    now = clock()

    def scan() -> None:
        [k for k, r in snapshot.items() if r.terminated_at is not None and
         now >= r.terminated_at + 1.0]

    m = best_of(1, store.prune)
    f = best_of(3, scan)
    return {"case": f"prune expiring 1% of {n}", "memory_s": m, "baseline_s": f,
            "baseline": "one scan of every run", "ratio": m / f}


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


def bench_s1_listing(n: int) -> dict[str, Any]:
    """list_runs(limit=50) and the lock hold time it costs: the S1 replica (sorts every
    run under its lock) against MemoryRunStore (walks 50 entries of an index)."""
    from reference.seeds.s1 import RunStore

    clock = VirtualClock(0.0)
    memory = MemoryRunStore(Policy(), clock)
    seed = RunStore(max_runs=None, ttl_seconds=None, clock=clock)
    for i in range(n):
        memory.start(f"run-{i}")
        seed.put_run(seed.new_record(f"run-{i}"))
        clock.advance(0.001)
    m_lock, s_lock = TimedLock(memory._lock), TimedLock(seed._lock)
    memory._lock, seed._lock = m_lock, s_lock  # type: ignore[assignment]
    calls = 50 if n <= 10_000 else 10
    m = best_of(3, lambda: [memory.list_runs(50) for _ in range(calls)]) / calls
    f = best_of(3, lambda: [seed.list_runs(50) for _ in range(calls)]) / calls
    m_hold, s_hold = max(m_lock.held), max(s_lock.held)
    return {"case": f"S1 list_runs(limit=50) of {n}", "memory_s": m, "baseline_s": f,
            "baseline": "S1 replica", "ratio": m / f,
            "lock_hold_memory_s": m_hold, "lock_hold_s1_s": s_hold,
            "lock_hold_ratio": m_hold / s_hold}


def main() -> None:
    console = Console()
    rows = []
    for n in SIZES:
        rows += [bench_lifecycle(n), bench_listing(n), bench_prune(n), bench_s1_listing(n)]
    table = Table(title="make bench: MemoryRunStore against a baseline, measured together")
    for col in ("case", "memory", "baseline", "ratio (memory / baseline)"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["case"], f"{r['memory_s'] * 1e3:.3f} ms",
                      f"{r['baseline_s'] * 1e3:.3f} ms ({r['baseline']})", f"{r['ratio']:.3g}x")
    console.print(table)
    held = Table(title="lock hold time of one list_runs(limit=50): longest of all calls")
    for col in ("runs", "MemoryRunStore", "S1 replica", "ratio (memory / S1)"):
        held.add_column(col)
    for r in rows:
        if "lock_hold_ratio" in r:
            held.add_row(r["case"].rsplit(" ", 1)[1], f"{r['lock_hold_memory_s'] * 1e6:.1f} us",
                         f"{r['lock_hold_s1_s'] * 1e6:.1f} us", f"{r['lock_hold_ratio']:.3g}x")
    console.print(held)
    out = Path("out/bench.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
