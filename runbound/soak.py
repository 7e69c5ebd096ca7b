"""`make soak`: the reliability suite (issue 11). `python -m runbound.soak` runs it at full
size and prints each figure as it is measured, then a summary table; it exits 1 if any
part found a violation. `tests/test_reliability.py` runs every part small.

The parts, each a function of its size, so the tests reuse them:
1. `sqlite_kills`: a child process does calls on a SQLite file and is SIGKILLed mid-call,
   again and again. After each kill the file, reopened, must hold exactly what the model
   says the acknowledged calls made, or that plus the one call in flight (nothing lost,
   nothing beyond what was attempted), pass `PRAGMA integrity_check`, and keep its
   counters (meta `active`, `terminal`, `len()`) equal to its rows.
2. `redis_kills`: the redis-server (append-only, fsync always) is SIGKILLed mid-workload
   and restarted on its files, while the client retries or after it has given up; the
   store must equal the model after the calls it acknowledged, and a call it gave up on
   (OutcomeUnknown) must be found applied or not, wholly. `redis_stalls`: the server is
   stopped (SIGSTOP) under threads appending events through a client that times out and
   retries: every append is applied once (sequence numbers consecutive, the buffer
   exactly what was acknowledged).
3. `threads_soak`: 8 threads of random calls on a store with every cap set, on the real
   clock, its own cleanup worker running, and a sampler that checks the bounds at every
   sample and that no run a thread holds active is gone unless the lease allowed it.
4. `malformed_calls`: bad arguments in every position, mixed with valid calls: each bad
   one refused with the model's typed error and rule, the store unchanged (its
   `snapshot()`, and for the durable stores their rows and keys read directly).
5. `unfinished_starts`: runs started and never finished, under a lease and caps: `len()`
   within the bound throughout, memory flat, and the CPU cost per call at 100k retained
   runs against 1k (wall time for Redis, whose cost is in another process).

Time is a counter in parts 1, 2, 4 and 5 (one tick per call that reads the clock), so the
model can replay every call exactly; part 3 runs on `time.time`, as a deployment does.
Nothing here asserts a duration: real seconds appear only as guards and as figures.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ConstantBackoff, ExponentialBackoff
from redis.retry import Retry
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runbound.model import spec
from runbound.model.clock import Clock, VirtualClock
from runbound.model.errors import AdmissionRefused, RunboundError
from runbound.model.invariants import Observation, state_violations
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.protocol import RunStore
from runbound.model.records import Page, Run
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis import OutcomeUnknown, RedisRunStore
from runbound.reference.redis_server import RedisServer
from runbound.reference.sqlite import SqliteRunStore

STORES = ("memory", "sqlite", "redis")
#: real seconds any single wait may take: a guard against a hang, never a measure
GUARD = 60.0
#: violations kept per part (the rest are counted)
KEEP = 20

Call = tuple[str, tuple[Any, ...]]
Maker = Callable[[Policy, Clock], RunStore]


# --- results and figures ------------------------------------------------------------------

@dataclass
class Result:
    """What one part measured (`figures`, in the order measured) and found wrong."""

    part: str
    store: str
    console: Console | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    more: int = 0  # violations beyond the KEEP kept

    def figure(self, name: str, value: Any) -> None:
        self.figures[name] = value
        if self.console is not None:
            self.console.print(f"  [{self.part}] {self.store}: {name} = {_shown(value)}",
                               markup=False)

    def fail(self, what: str) -> None:
        if len(self.violations) < KEEP:
            self.violations.append(what)
            if self.console is not None:
                self.console.print(f"  [{self.part}] {self.store}: VIOLATION {what}",
                                   markup=False, style="red")
        else:
            self.more += 1

    @property
    def ok(self) -> bool:
        return not self.violations


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _kind(outcome: object) -> str:
    return type(outcome).__name__ if isinstance(outcome, BaseException) else "ok"


def _rule(error: RunboundError) -> str:
    return error.rule.split(":")[0]


def _same_outcome(actual: object, expected: object) -> bool:
    """A store's outcome against the model's: errors by class and rule code; pages by
    their runs and whether a next page exists (cursors are each store's own)."""
    if isinstance(expected, RunboundError):
        return (type(actual) is type(expected) and isinstance(actual, RunboundError)
                and _rule(actual) == _rule(expected))
    if isinstance(expected, Page):
        return (isinstance(actual, Page) and actual.runs == expected.runs
                and (actual.next_cursor is None) == (expected.next_cursor is None))
    return actual == expected


def _call(store: RunStore, call: Call) -> object:
    """Make `call` on `store`: its result, or the RunboundError it raised. Any other
    exception propagates (a part that expects only typed errors reports it)."""
    op, args = call
    try:
        return getattr(store, op)(*args)
    except RunboundError as error:
        return error


def _diff(seen: Sequence[Run], expected: Sequence[Run]) -> str:
    """What differs between two lists of runs, briefly."""
    a, b = {r.run_id: r for r in seen}, {r.run_id: r for r in expected}
    parts = []
    if extra := sorted(set(a) - set(b)):
        parts.append(f"not in the model: {extra[:5]}")
    if lost := sorted(set(b) - set(a)):
        parts.append(f"lost: {lost[:5]}")
    changed = [k for k in a.keys() & b.keys() if a[k] != b[k]]
    for k in sorted(changed)[:3]:
        parts.append(f"{k!r}: store {a[k]} model {b[k]}")
    if not parts and [r.run_id for r in seen] != [r.run_id for r in expected]:
        parts.append("start order differs")
    return "; ".join(parts) or "equal"


class Ticks:
    """A clock that reads `now`, set by whoever drives the calls: one tick per call."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counter:
    """A clock that moves one tick per reading (part 5: each start reads it once)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


# --- where the stores live ----------------------------------------------------------------

#: every key matching ARGV[1] that has no TTL, with its serialized value, in one round
#: trip (the request records expire on their own and pile up between looks)
_PERSISTENT = """
local out = {}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  if redis.call('PTTL', key) == -1 then
    out[#out + 1] = key
    out[#out + 1] = redis.call('DUMP', key)
  end
end
return out
"""


class Lab:
    """The suite's stores: SQLite files in a directory of its own, and one redis-server,
    started on first use. `close()` removes both."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or Path(tempfile.mkdtemp(prefix="runbound-soak-"))
        self._own_directory = directory is None
        self._server: RedisServer | None = None
        self._names = itertools.count()
        self._clients: list[redis.Redis] = []  # the raw readers', closed with the lab

    @property
    def server(self) -> RedisServer:
        if self._server is None:
            self._server = RedisServer()
        return self._server

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.server.url, decode_responses=True)

    def maker(self, kind: str, *, durable: bool = True) -> Maker:
        """A factory of `kind` stores, each new (its own file, its own prefix). Not
        `durable`: SQLite with synchronous=OFF and Redis with appendfsync no, for the
        parts that measure cost and bounds, not durability (an fsync per call is a
        constant that would mask a cost growing with size)."""
        if kind == "memory":
            return MemoryRunStore
        if kind == "sqlite":
            def sqlite(policy: Policy, clock: Clock) -> RunStore:
                return SqliteRunStore(policy, clock, str(self.directory /
                                                         f"{next(self._names)}.sqlite3"),
                                      synchronous="FULL" if durable else "OFF")
            return sqlite
        if kind == "redis":
            def redis_store(policy: Policy, clock: Clock) -> RunStore:
                admin = self.admin()
                admin.config_set("appendfsync", "always" if durable else "no")
                admin.close()
                return RedisRunStore(policy, clock, url=self.server.url,
                                     prefix=f"soak:{{p{next(self._names)}}}:")
            return redis_store
        raise ValueError(f"no store {kind!r}: one of {STORES}")

    def raw(self, store: RunStore) -> Callable[[], object] | None:
        """What a durable store keeps, read around it: a SQLite file's rows and meta
        through a connection of our own; a Redis store's persistent keys (the request
        records, which expire on their own, left out). None for the memory store."""
        if isinstance(store, SqliteRunStore):
            path = store.path

            def rows() -> object:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    return (db.execute("SELECT * FROM runs ORDER BY seq").fetchall(),
                            db.execute("SELECT * FROM meta ORDER BY key").fetchall())
                finally:
                    db.close()
            return rows
        if isinstance(store, RedisRunStore):
            admin = redis.Redis.from_url(self.server.url)
            self._clients.append(admin)
            pattern = store.prefix.replace("{", "\\{").replace("}", "\\}") + "*"

            def keys() -> object:
                return sorted(zip(*[iter(admin.eval(_PERSISTENT, 0, pattern))] * 2,
                                  strict=True))
            return keys
        return None

    def footprint(self, store: RunStore) -> Callable[[], int] | None:
        """What a durable store occupies, in bytes: a SQLite store's file and its WAL; the
        redis-server's memory (every store on it). None for the memory store."""
        if isinstance(store, SqliteRunStore):
            files = [Path(store.path), Path(store.path + "-wal")]
            return lambda: sum(f.stat().st_size for f in files if f.exists())
        if isinstance(store, RedisRunStore):
            admin = redis.Redis.from_url(self.server.url)
            self._clients.append(admin)
            return lambda: int(admin.info("memory")["used_memory"])
        return None

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


# --- the workload of parts 1 and 2: one writer, replayed by the model ---------------------

#: caps, a TTL and a lease measured in calls (one tick each), so every rule is exercised
#: within a few hundred calls
CRASH_POLICY = Policy(ttl=400.0, max_terminal=30, max_active=12, max_events_per_run=4,
                      stale_after=150.0)
CRASH_IDS = (*(f"k{i}" for i in range(16)), "ERR", "nil", "a'b", 'q"', "x\ny", "\x00",
             "😀", "{t}", "; DROP TABLE runs; --", "z" * 128)
PAYLOADS = ("", "e", "ERR", '{"a": [1]}', "x\ny", "\x00", "😀", "p" * 300)
TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
#: clock ticks between the first calls of two children (part 1): more than one makes
TICKS_PER_LIFE = 10**6


def workload(seed: int) -> Iterator[Call]:
    """An endless stream of calls on CRASH_IDS, the same for the same seed: the child
    makes it, and the parent rebuilds it to replay in the model."""
    rng = random.Random(seed)
    while True:
        rid = rng.choice(CRASH_IDS)
        roll = rng.random()
        if roll < 0.25:
            yield "start", (rid,)
        elif roll < 0.43:
            yield "transition", (rid, rng.choice((Status.RUNNING, "running")))
        elif roll < 0.58:
            yield "transition", (rid, rng.choice(TERMINAL).value)
        elif roll < 0.78:
            yield "append_event", (rid, rng.choice(PAYLOADS))
        elif roll < 0.86:
            yield "heartbeat", (rid,)
        elif roll < 0.92:
            yield "get", (rid,)
        elif roll < 0.97:
            yield "list_runs", (rng.randint(1, 20),)
        else:
            yield "prune", ()


def _replay(state: spec.ModelState, calls: Sequence[Call], first_tick: float
            ) -> tuple[list[spec.ModelState], list[object]]:
    """The model's state after each prefix of `calls` (states[i]: after i calls) and the
    outcome of each, call i at tick `first_tick + i`."""
    states, outcomes = [state], []
    for i, (op, args) in enumerate(calls):
        state, outcome = spec.apply(state, op, args, first_tick + i)
        states.append(state)
        outcomes.append(outcome)
    return states, outcomes


# --- part 1: SQLite through SIGKILL ---------------------------------------------------------

CHILD = "import sys; from runbound.soak import sqlite_child; sqlite_child(sys.argv[1:])"


def sqlite_child(argv: Sequence[str]) -> None:
    """The child of part 1: the workload on the SQLite file at `argv[0]` (default
    synchronous=FULL), one line `<index> <outcome>` on stdout after each call returns --
    the acknowledgement. It runs until it is killed. With `argv[3] == "ack-first"` it
    acknowledges each call before making it (outcome "?": not known yet), the defect the
    checks of part 1 must catch."""
    path, seed, first_tick = argv[0], int(argv[1]), float(argv[2])
    ack_first = argv[3:] == ["ack-first"]
    clock = Ticks(first_tick)
    store = SqliteRunStore(CRASH_POLICY, clock, path)
    for i, call in enumerate(workload(seed)):
        clock.now = first_tick + i
        if ack_first:
            os.write(1, f"{i} ?\n".encode())
        outcome = _call(store, call)
        if not ack_first:
            os.write(1, f"{i} {_kind(outcome)}\n".encode())  # one write: a line or none


def _sqlite_file(path: Path, result: Result, after: str) -> tuple[Run, ...]:
    """The file as a restarted process finds it, checked for integrity and for counters
    that agree with its rows: its runs."""
    db = sqlite3.connect(path)
    try:
        check = db.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            result.fail(f"{after}: integrity_check says {check[:3]}")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        by_status = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
    finally:
        db.close()
    with SqliteRunStore(CRASH_POLICY, Ticks(), str(path)) as store:
        runs, size = store.snapshot(), len(store)
    active = sum(1 for r in runs if r.active)
    rows_active = sum(n for s, n in by_status.items() if Status(s).active)
    if not meta.get("active") == active == rows_active:
        result.fail(f"{after}: meta active={meta.get('active')}, snapshot {active}, "
                    f"rows {rows_active}")
    terminal = len(runs) - active
    if not meta.get("terminal") == terminal == sum(by_status.values()) - rows_active:
        result.fail(f"{after}: meta terminal={meta.get('terminal')}, snapshot {terminal}, "
                    f"rows {sum(by_status.values()) - rows_active}")
    if size != len(runs):
        result.fail(f"{after}: len() is {size}, the snapshot holds {len(runs)}")
    return runs


def _holds(runs: tuple[Run, ...], mark: float, state: spec.ModelState) -> bool:
    """True iff a file's runs and clock mark are the model's `state` (the file writes the
    model's "no reading yet", -inf, as -1e308)."""
    return runs == state.runs and mark == max(state.clock, -1e308)


def _mark(path: Path) -> float:
    db = sqlite3.connect(path)
    try:
        return float(db.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()[0])
    finally:
        db.close()


def sqlite_kills(kills: int, directory: Path, *, seed: int = 1, max_acks: int = 300,
                 ack_first: bool = False, console: Console | None = None) -> Result:
    """Part 1: `kills` children, each SIGKILLed after a random number (1 to `max_acks`)
    of acknowledged calls, on one file; after each, the file against the model.
    `ack_first`: children that acknowledge before calling (see `sqlite_child`)."""
    result = Result("1 SIGKILL", "sqlite", console)
    path = directory / "kills.sqlite3"
    rng = random.Random(seed)
    state = spec.initial(CRASH_POLICY)
    acked = in_flight_applied = checked = 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for kill in range(kills):
        child_seed, target = rng.randrange(2**32), rng.randint(1, max_acks)
        first_tick = 1000.0 + kill * TICKS_PER_LIFE
        with tempfile.TemporaryFile() as errors:
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(path),
                                      str(child_seed), repr(first_tick),
                                      *(["ack-first"] if ack_first else [])],
                                     stdout=subprocess.PIPE, stderr=errors, env=env)
            assert child.stdout is not None
            lines: list[bytes] = []
            for line in child.stdout:  # the kill comes once `target` calls are acknowledged
                lines.append(line)
                if len(lines) >= target:
                    break
            child.send_signal(signal.SIGKILL)
            child.wait(GUARD)
            lines.extend(child.stdout.read().splitlines(keepends=True))  # before the kill
            child.stdout.close()
            if child.returncode != -signal.SIGKILL or len(lines) < target:
                errors.seek(0)
                result.fail(f"child {kill} ended by itself (code {child.returncode}) after "
                            f"{len(lines)} calls: {errors.read().decode()[-2000:]}")
                break
        acks = [line.split() for line in lines if line.endswith(b"\n")]
        k = len(acks)
        calls = list(itertools.islice(workload(child_seed), k + 1))
        states, outcomes = _replay(state, calls, first_tick)
        for i, ((index, kind), expected) in enumerate(zip(acks, outcomes, strict=False)):
            if int(index) != i or kind.decode() not in ("?", _kind(expected)):
                result.fail(f"child {kill}, call {i} {calls[i]}: acknowledged as "
                            f"{index.decode()} {kind.decode()}, the model says "
                            f"{_kind(expected)}")
        after = f"kill {kill} (after {k} acknowledged calls)"
        runs = _sqlite_file(path, result, after)
        mark = _mark(path)
        # every call moves the mark (one tick each), so the two candidates always differ
        if _holds(runs, mark, states[k]):
            state = states[k]
        elif _holds(runs, mark, states[k + 1]):
            state = states[k + 1]
            in_flight_applied += 1
        else:
            result.fail(f"{after}: the file is neither the acknowledged calls nor those and "
                        f"the one in flight ({calls[k]}): {_diff(runs, states[k].runs)}; "
                        f"mark {mark}, model {states[k].clock} or {states[k + 1].clock}")
            break
        acked += k
        checked += 1
    result.figure("kills checked", checked)
    result.figure("acknowledged calls", acked)
    result.figure("kills that caught a call durable but unacknowledged", in_flight_applied)
    result.figure("runs in the file at the end", len(state.runs))
    return result


# --- part 2: Redis through SIGKILL and SIGSTOP ---------------------------------------------

def _retrying_client(url: str, *, socket_timeout: float, retry: Retry) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=socket_timeout,
                                socket_connect_timeout=socket_timeout, retry=retry)


def redis_kills(kills: int, server: RedisServer, *, seed: int = 2, max_acks: int = 300,
                console: Console | None = None) -> Result:
    """Part 2a: one writer does the workload through a retrying client while another
    thread SIGKILLs the server after a random number of acknowledged calls and restarts
    it on its files: after even kills at once (the call in flight is retried onto the
    new server), after odd ones only once the writer has given up (OutcomeUnknown).
    After each restart the store must equal the model after the acknowledged calls; a
    call left OutcomeUnknown must be found wholly applied or not at all."""
    result = Result("2 SIGKILL", "redis", console)
    rng = random.Random(seed)
    # about 2 s of retries: more than a restart takes; the socket timeout is a guard
    client = _retrying_client(server.url, socket_timeout=GUARD / 4,
                              retry=Retry(ExponentialBackoff(cap=0.1, base=0.005), 25))
    clock = Ticks()
    store = RedisRunStore(CRASH_POLICY, clock, client=client, prefix="soak:{kills}:")
    state = spec.initial(CRASH_POLICY)
    calls = workload(seed)
    tick = 1000.0
    acked = spanned = unknown_applied = unknown_not = 0
    go, back, gave_up = threading.Event(), threading.Event(), threading.Event()
    killed = [0]
    crash: list[BaseException] = []

    def killer() -> None:
        try:
            for kill in range(kills):
                if not go.wait(GUARD):
                    return
                go.clear()
                server.kill()  # mid-call: the writer is calling without a pause
                killed[0] += 1
                if kill % 2:
                    gave_up.wait(GUARD)
                server.start()  # on the same files and port
                back.set()
        except BaseException as error:  # reported by the writer
            crash.append(error)
            back.set()

    thread = threading.Thread(target=killer, name="soak-killer", daemon=True)
    thread.start()
    try:
        for kill in range(kills):
            target, done = rng.randint(1, max_acks), 0
            back.clear()
            gave_up.clear()
            while not (back.is_set() and done > target):
                if done == target:
                    go.set()
                call = next(calls)
                clock.now = tick
                before = killed[0]
                try:
                    outcome = _call(store, call)
                except Exception as error:  # not typed: a violation
                    result.fail(f"{call}: untyped {error!r}")
                    return result
                state_without = state
                state, expected = spec.apply(state, call[0], call[1], tick)
                tick += 1
                done += 1
                spanned += killed[0] != before
                if isinstance(outcome, OutcomeUnknown):
                    gave_up.set()
                    if not back.wait(GUARD):
                        result.fail("the server did not come back")
                        return result
                    runs = store.snapshot()
                    # a read or a refusal changes no run: it counts as applied (the
                    # mark it may have raised is below every later tick either way)
                    if runs == state.runs:
                        unknown_applied += 1
                    elif runs == state_without.runs:
                        unknown_not += 1
                        state = state_without
                    else:
                        result.fail(f"after OutcomeUnknown for {call}: neither applied nor "
                                    f"not: {_diff(runs, state.runs)}")
                        return result
                    continue
                acked += 1
                if not _same_outcome(outcome, expected):
                    result.fail(f"call {call} at {tick - 1}: {outcome!r}, the model says "
                                f"{expected!r}")
            if crash:
                result.fail(f"the server could not be restarted: {crash[0]!r}")
                return result
            runs, size = store.snapshot(), len(store)
            if runs != state.runs or size != len(state.runs):
                result.fail(f"after kill {kill}: len {size}; {_diff(runs, state.runs)}")
                return result
    finally:
        go.set()  # a killer still waiting ends
        thread.join(GUARD)
        store.close()
        client.close()
    result.figure("kills", killed[0])
    result.figure("acknowledged calls", acked)
    result.figure("calls in flight at a kill", spanned)
    result.figure("calls OutcomeUnknown", unknown_applied + unknown_not)
    result.figure("... then found applied (or a read) / not applied",
                  f"{unknown_applied} / {unknown_not}")
    return result


def _connected(admin: redis.Redis) -> int:
    return int(admin.info("clients")["connected_clients"])


def _evalsha_calls(admin: redis.Redis) -> int:
    return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def redis_stalls(stalls: int, server: RedisServer, *, threads: int = 4,
                 stall_seconds: float = 0.5, appends_between: int = 20,
                 console: Console | None = None) -> Result:
    """Part 2b: `threads` writers append events to runs of their own through a client
    that times out after 0.1 s and retries; the server is SIGSTOPped `stalls` times and
    SIGCONTinued by a timer. Each append must return the next sequence number, and each
    run's buffer must end as exactly the events acknowledged, in order, none twice."""
    result = Result("2 SIGSTOP", "redis", console)
    client = _retrying_client(server.url, socket_timeout=0.1,
                              retry=Retry(ConstantBackoff(0.05), 400))
    admin = redis.Redis.from_url(server.url)
    store = RedisRunStore(Policy(max_events_per_run=64), client=client,
                          prefix="soak:{stall}:")
    acked = [0] * threads
    unknown = [0] * threads
    stop = threading.Event()
    progress = threading.Condition()

    def writer(k: int) -> None:
        rid = f"w{k}"
        n = 0
        try:
            while not stop.is_set():
                try:
                    seq = store.append_event(rid, f"{k}:{n + 1}")
                except OutcomeUnknown:
                    # applied once or not at all: the buffer tells which
                    got = store.get(rid)
                    n = got.dropped_events + len(got.events)
                    unknown[k] += 1
                    continue
                n += 1
                if seq != n:
                    result.fail(f"writer {k}: append {n} returned sequence number {seq}")
                    return
                with progress:
                    acked[k] = n
                    progress.notify_all()
        except Exception as error:
            result.fail(f"writer {k}: {error!r}")

    def moved_on(mark: list[int]) -> bool:
        return all(a >= m + appends_between for a, m in zip(acked, mark, strict=True))

    for k in range(threads):
        store.start(f"w{k}")
        store.transition(f"w{k}", Status.RUNNING)
    baseline = _connected(admin)  # ours, and whatever else was connected
    calls_before = _evalsha_calls(admin)
    writers = [threading.Thread(target=writer, args=(k,), name=f"soak-writer-{k}",
                                daemon=True) for k in range(threads)]
    for t in writers:
        t.start()
    try:
        for _ in range(stalls):
            with progress:  # each writer has been appending since the last stall
                if not progress.wait_for(functools.partial(moved_on, list(acked)), GUARD):
                    result.fail("the writers made no progress")
                    break
            resume = threading.Timer(stall_seconds, os.kill, (server.pid, signal.SIGCONT))
            os.kill(server.pid, signal.SIGSTOP)
            resume.start()
            resume.join()
        with progress:
            progress.wait_for(functools.partial(moved_on, list(acked)), GUARD)
    finally:
        stop.set()
        for t in writers:
            t.join(GUARD)
    store.close()
    client.close()
    # the server runs what every abandoned connection had sent before it sees the close
    end = time.monotonic() + GUARD
    while _connected(admin) > baseline - 1:
        if time.monotonic() > end:
            result.fail(f"the server kept {_connected(admin) - baseline + 1} connections of "
                        "the closed client")
            break
        time.sleep(0.01)
    sent = _evalsha_calls(admin) - calls_before
    with RedisRunStore(Policy(max_events_per_run=64), url=server.url,
                       prefix="soak:{stall}:") as fresh:
        for k in range(threads):
            run = fresh.get(f"w{k}")
            total = run.dropped_events + len(run.events)
            wanted = tuple(f"{k}:{n}" for n in range(total - len(run.events) + 1, total + 1))
            if total != acked[k] and not (unknown[k] and total == acked[k] + 1):
                result.fail(f"writer {k}: {acked[k]} appends acknowledged, {total} applied")
            if run.events != wanted:
                result.fail(f"writer {k}: buffer {run.events[-5:]}, expected {wanted[-5:]}")
    made = sum(acked) + 2 * sum(unknown)  # an unknown append, then a get
    if sent <= made:
        result.fail(f"no call was retried ({sent} script calls for {made} appends): the "
                    "stalls proved nothing")
    result.figure("stalls", stalls)
    result.figure("appends acknowledged", sum(acked))
    result.figure("script calls re-sent by retries", max(sent - made, 0))
    result.figure("OutcomeUnknown", sum(unknown))
    admin.close()
    return result


# --- part 3: threads on the real clock -----------------------------------------------------

THREADS_POLICY = Policy(ttl=1.0, max_terminal=32, max_active=16, max_events_per_run=5,
                        stale_after=0.25, sweep=SweepMode.BOTH)


@dataclass
class _Held:
    """A run a thread started and has not ended, as that thread knows it."""

    #: a lower bound of its `updated_at`: the lease cannot have run out before
    #: `since + stale_after`
    since: float
    #: bumped when a call on it begins and when it ends, so a sampler can tell a run
    #: that stayed put from one a thread touched meanwhile
    version: int = 0
    busy: bool = False


class _Ledger:
    """One thread's runs, shared with the sampler."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, _Held] = {}

    def copy(self) -> dict[str, tuple[int, bool, float]]:
        with self.lock:
            return {rid: (h.version, h.busy, h.since) for rid, h in self.held.items()}


def _cleanup_threads() -> int:
    """Cleanup worker threads alive in this process, counted from the interpreter (every
    store names its worker's thread "runbound-cleanup-<n>"), not taken from a store."""
    return sum(1 for t in threading.enumerate()
               if t.name.startswith("runbound-cleanup") and t.is_alive())


def _gone(error: RunboundError) -> bool:
    """True iff the refusal says the run is not active any more (absent or terminal)."""
    return str(error.state) == "absent" or str(error.state) in {s.value for s in TERMINAL}


def threads_soak(make: Maker, store_name: str, seconds: float, *, threads: int = 8,
                 min_calls: int = 50, min_samples: int = 20, seed: int = 3,
                 policy: Policy = THREADS_POLICY, console: Console | None = None) -> Result:
    """Part 3: `threads` threads of random calls for `seconds` (and at least `min_calls`
    each, and `min_samples` samples), on `time.time`, with the store's cleanup worker
    running. Checked by the threads on their own runs and by a sampler on every sample:
    size, active and events within their caps (I1-I3, I6, I11, I12); no run a thread
    holds active gone or terminal unless its lease could have run out; only typed errors."""
    result = Result("3 threads", store_name, console)
    store = make(policy, time.time)
    stale_after = policy.stale_after if policy.stale_after is not None else math.inf
    bound = policy.size_bound
    ledgers = [_Ledger() for _ in range(threads)]
    own = [[f"t{k}-{i}" for i in range(8)] for k in range(threads)]
    everyone = [rid for ids in own for rid in ids]
    calls = [0] * threads
    reaped = [0] * threads
    stop = threading.Event()
    lock = threading.Lock()  # guards result (fail) across threads

    def fail(what: str) -> None:
        with lock:
            result.fail(what)

    def lost(k: int, rid: str, held: _Held, seen: str, after: float) -> None:
        """The run held active is absent or terminal: only the lease may have done it."""
        if after < held.since + stale_after:
            fail(f"active run {rid!r} of thread {k} {seen} at {after:.6f}, its lease runs "
                 f"until {held.since + stale_after:.6f}: evicted or ended while active")
        else:
            reaped[k] += 1

    def caller(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        ledger = ledgers[k]
        # six busy ids and two rarely used ones, which idle long enough to be reaped
        weights = [20] * 6 + [1] * 2
        while not stop.is_set():
            rid = rng.choices(own[k], weights)[0]
            roll = rng.random()
            call: Call
            if roll < 0.22:
                call = ("start", (rid,))
            elif roll < 0.40:
                call = ("transition", (rid, Status.RUNNING))
            elif roll < 0.52:
                call = ("transition", (rid, rng.choice(TERMINAL)))
            elif roll < 0.70:
                call = ("append_event", (rid, f"e{calls[k]}"))
            elif roll < 0.80:
                call = ("heartbeat", (rid,))
            elif roll < 0.88:
                call = ("get", (rng.choice(everyone),))
            elif roll < 0.96:
                call = ("list_runs", (rng.randint(1, 12), rng.choice((None, "running"))))
            else:
                call = ("prune", ())
            op = call[0]
            args: tuple[Any, ...] = call[1]
            target = str(args[0]) if op not in ("list_runs", "prune") else ""
            with ledger.lock:  # only this thread changes its ledger; the sampler reads it
                held = ledger.held.get(target)
                if held is not None:
                    held.busy, held.version = True, held.version + 1
            before = time.time()
            try:
                outcome = _call(store, call)
            except Exception as error:
                fail(f"{call}: untyped {error!r}")
                outcome = error
            after = time.time()
            calls[k] += 1
            if op == "list_runs" and isinstance(outcome, Page):
                _walk(store, call, outcome, fail)
            if held is None and op != "start":
                continue  # not a run this thread holds: nothing to account for
            with ledger.lock:
                if held is not None:
                    held.busy, held.version = False, held.version + 1
                if isinstance(outcome, OutcomeUnknown):
                    ledger.held.pop(target, None)  # it may be either way: no claim
                elif isinstance(outcome, RunboundError):
                    if held is not None and _gone(outcome):
                        del ledger.held[target]
                        lost(k, target, held, f"refused {op} with {_kind(outcome)} "
                                              f"({outcome.state})", after)
                elif isinstance(outcome, Run):
                    if op == "start":
                        if held is not None:  # replaced: the old run was not active
                            lost(k, target, held, "was replaced by a start", after)
                        ledger.held[target] = _Held(outcome.updated_at)
                    elif held is not None and outcome.terminal:
                        del ledger.held[target]
                        if op != "transition":  # a get sees it ended: the lease did it
                            if outcome.status is not Status.FAILED:
                                fail(f"run {target!r} of thread {k} is {outcome.status} "
                                     "though no thread ended it")
                            lost(k, target, held, f"seen {outcome.status} by get", after)
                    elif held is not None and op != "get":
                        held.since = outcome.updated_at
                elif op == "append_event" and held is not None:
                    held.since = before  # an effective time is never below a reading

    def sample() -> None:
        first = [ledger.copy() for ledger in ledgers]
        size = len(store)
        runs = store.snapshot()
        workers = _cleanup_threads()
        after = time.time()
        second = [ledger.copy() for ledger in ledgers]
        if bound is not None and size > bound:
            fail(f"len() is {size}, the bound is {bound}")
        for rule, what in state_violations(Observation(runs, workers), policy):
            fail(f"{rule}: {what}")
        by_id = {r.run_id: r for r in runs}
        for k, (a, b) in enumerate(zip(first, second, strict=True)):
            for rid, (version, busy, since) in a.items():
                if busy or b.get(rid, (None,))[0] != version:
                    continue  # a call on it was under way: no claim
                run = by_id.get(rid)
                if run is not None and run.active:
                    continue
                if run is not None and run.status is not Status.FAILED:
                    fail(f"run {rid!r} of thread {k} is {run.status} though it never "
                         "ended it")
                elif after < since + stale_after:
                    fail(f"active run {rid!r} of thread {k} is "
                         f"{'gone' if run is None else 'FAILED'} in a snapshot at "
                         f"{after:.6f}, its lease runs until {since + stale_after:.6f}")

    workers = [threading.Thread(target=caller, args=(k,), name=f"soak-caller-{k}",
                                daemon=True) for k in range(threads)]
    samples = 0
    began, cpu = time.perf_counter(), time.process_time()
    try:
        store.start_cleanup_worker(0.05)
        for t in workers:
            t.start()
        while samples < min_samples or min(calls) < min_calls or \
                time.perf_counter() - began < seconds:
            try:
                sample()
            except Exception as error:
                fail(f"sample: untyped {error!r}")
            samples += 1
            if time.perf_counter() - began > GUARD * 10:
                fail(f"gave up: calls per thread {calls}")
                break
    finally:
        stop.set()
        for t in workers:
            t.join(GUARD)
        elapsed = time.perf_counter() - began
        store.stop_cleanup_worker(GUARD)
        alive = store.cleanup_workers_alive()
        store.close()
    counted = _cleanup_threads()
    if alive or counted:
        fail(f"after stop and close: {alive} workers by the store's count, {counted} "
             "threads by the interpreter's")
    result.figure("calls", sum(calls))
    result.figure("ops/s", sum(calls) / elapsed)
    result.figure("CPU s / wall s", (time.process_time() - cpu) / elapsed)
    result.figure("samples", samples)
    result.figure("held runs reaped by the lease", sum(reaped))
    return result


def _walk(store: RunStore, call: Call, page: Page, fail: Callable[[str], None]) -> None:
    """Follow `page` for two more pages: each within its limit, none repeating a run."""
    limit, status = call[1]
    seen = {r.run_id for r in page.runs}
    for _ in range(2):
        if len(page.runs) > limit:
            fail(f"list_runs({limit}) returned {len(page.runs)} runs")
        if page.next_cursor is None:
            break
        try:
            page = store.list_runs(limit, status, page.next_cursor)
        except RunboundError as error:
            fail(f"list_runs with the store's own cursor: {error!r}")
            break
        again = seen & {r.run_id for r in page.runs}
        if again:
            fail(f"a walk returned {sorted(again)[:3]} twice")
        seen |= {r.run_id for r in page.runs}


# --- part 4: malformed calls ----------------------------------------------------------------

MALFORMED_POLICY = Policy(ttl=100.0, max_terminal=4, max_active=3, max_events_per_run=2,
                          stale_after=40.0)
GOOD_IDS = ("m0", "m1", "m2", "m3", "ERR", "a\x00b", "😀", "x" * 128)
BAD_IDS: tuple[object, ...] = ("", "x" * 129, None, 17, 2.5, b"m0", ["m0"], "\ud800",
                               "m\udfff", "\udc00" + "x" * 10, True)
BAD_STATUSES: tuple[object, ...] = ("paused", "", "RUNNING", " running", 1, b"running",
                                    Status, ["running"])
BAD_PAYLOADS: tuple[object, ...] = (None, 7, b"x", "\ud800", "ok\udfffok", ["x"], 1.5)
BAD_LIMITS: tuple[object, ...] = (0, -1, True, False, 2**63, 10**5000, 1.0, "5", None,
                                  -(2**63))
BAD_CURSORS: tuple[object, ...] = ("²", "-1", "9" * 5000, str(2**63), "", " 1", "１",
                                   "1 ", "+1", 1, b"1", 1.0, "0x1")
BAD_INTERVALS: tuple[object, ...] = (0, -1, 0.0, math.nan, math.inf, -math.inf, 10**400,
                                     True, "1", None, 1e9 + 1)


def malformed(rng: random.Random) -> Call:
    """A call with at least one bad argument, in any position of any operation."""
    rid, bad = rng.choice(GOOD_IDS), rng.choice(BAD_IDS)
    status = rng.choice((*Status, *(s.value for s in Status)))
    kind = rng.randrange(13)
    if kind < 3:
        return ("start", "heartbeat", "get")[kind], (bad,)
    if kind == 3:
        return "transition", (bad, status)
    if kind == 4:
        return "transition", (rid, rng.choice(BAD_STATUSES))
    if kind == 5:
        return "transition", (bad, rng.choice(BAD_STATUSES))
    if kind == 6:
        return "append_event", (bad, rng.choice(PAYLOADS))
    if kind == 7:
        return "append_event", (rid, rng.choice(BAD_PAYLOADS))
    if kind == 8:
        return "list_runs", (rng.choice(BAD_LIMITS),)
    if kind == 9:
        return "list_runs", (rng.randint(1, 5), rng.choice(BAD_STATUSES))
    if kind == 10:
        return "list_runs", (rng.randint(1, 5), rng.choice((None, "running")),
                             rng.choice(BAD_CURSORS))
    if kind == 11:
        return "list_runs", (rng.choice(BAD_LIMITS), rng.choice(BAD_STATUSES),
                             rng.choice(BAD_CURSORS))
    return "start_cleanup_worker", (rng.choice(BAD_INTERVALS),)


def valid(rng: random.Random) -> Call:
    rid = rng.choice(GOOD_IDS)
    roll = rng.random()
    if roll < 0.3:
        return "start", (rid,)
    if roll < 0.5:
        return "transition", (rid, rng.choice((*Status, "running", "completed")))
    if roll < 0.7:
        return "append_event", (rid, rng.choice(PAYLOADS))
    if roll < 0.8:
        return "heartbeat", (rid,)
    if roll < 0.9:
        return "get", (rid,)
    if roll < 0.97:
        return "list_runs", (rng.randint(1, 10), rng.choice((None, *Status)))
    return "prune", ()


def malformed_calls(make: Maker, store_name: str, calls: int, *, seed: int = 4,
                    raw: Callable[[RunStore], Callable[[], object] | None] | None = None,
                    console: Console | None = None) -> Result:
    """Part 4: `calls` malformed calls, one valid call after every four on average, on
    a virtual clock, with the model alongside. Each malformed call must raise the
    model's error (InvalidArgument, with its rule code) and leave the store as it was:
    `snapshot()` with start order, `len()`, and what `raw(store)` reads around it."""
    result = Result("4 malformed", store_name, console)
    rng = random.Random(seed)
    clock = VirtualClock(1000.0)
    store = make(MALFORMED_POLICY, clock)
    read_raw = raw(store) if raw is not None else None
    state = spec.initial(MALFORMED_POLICY)
    made = typed = valid_calls = 0

    def look() -> tuple[Any, ...]:
        runs = store.snapshot()
        return (runs, [r.seq for r in runs], len(store),
                read_raw() if read_raw is not None else None)

    before = look()
    try:
        while made < calls:
            if rng.random() < 0.2:
                clock.advance(rng.choice((0.0, 1.0, 1.0, 5.0, 60.0)))
                call = valid(rng)
                outcome = _call(store, call)
                state, expected = spec.apply(state, call[0], call[1], clock())
                valid_calls += 1
                if not _same_outcome(outcome, expected):
                    result.fail(f"valid {call}: {outcome!r}, the model says {expected!r}")
                before = look()
                continue
            call = malformed(rng)
            made += 1
            after_model, expected = spec.apply(state, call[0], call[1], clock())
            if not isinstance(expected, RunboundError) or after_model != state:
                raise AssertionError(f"the model accepts {call}: not a malformed call")
            try:
                outcome = _call(store, call)
            except Exception as error:
                outcome = error
            shown = f"{call[0]}{_short(call[1])}"
            wanted = f"{type(expected).__name__} ({_rule(expected)})"
            if isinstance(outcome, BaseException) and not isinstance(outcome, RunboundError):
                result.fail(f"{shown}: untyped {outcome!r:.200}; expected {wanted}")
            elif not isinstance(outcome, RunboundError):
                result.fail(f"{shown}: accepted, returned {_short(outcome)}; expected {wanted}")
            elif not _same_outcome(outcome, expected):
                result.fail(f"{shown}: {type(outcome).__name__} ({outcome.rule[:60]}); "
                            f"expected {wanted}")
            elif _rule(expected) not in str(outcome):
                result.fail(f"{shown}: the message {str(outcome)[:80]!r} does not name the "
                            f"rule {_rule(expected)}")
            else:
                typed += 1
            now = look()
            if now != before:
                what = [name for name, a, b in zip(("snapshot", "start order", "len()", "raw"),
                                                   now, before, strict=True) if a != b]
                result.fail(f"{shown} changed the store ({', '.join(what)}): "
                            f"{_diff(now[0], before[0])}")
                before = now
            if _cleanup_threads():
                result.fail(f"{shown} started a cleanup worker")
                store.stop_cleanup_worker(GUARD)
    finally:
        store.close()
    result.figure("malformed calls", made)
    result.figure("typed as the model says", f"{typed:,} ({100 * typed / max(made, 1):.2f}%)")
    result.figure("valid calls between them (all equal to the model's)", valid_calls)
    return result


def _short(value: object) -> str:
    """`value` for a message, an argument tuple element by element (`spec.shown`)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(map(spec.shown, value)) + ")"
    return spec.shown(value)


# --- part 5: starts that never finish ---------------------------------------------------------

def unfinished_policy(retained: int) -> Policy:
    """About `retained` runs in steady state with one start per tick: the lease reaps a
    run `retained/2` ticks after its start (so about that many are active, under
    `max_active` with room to spare), and the terminal cap keeps the newest `retained/2`
    of the reaped ones."""
    half = retained // 2
    return Policy(max_active=half + half // 5 + 1, max_terminal=half,
                  stale_after=float(half))


def _rss() -> int:
    """This process's resident memory now, in bytes (not the peak)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def unfinished_starts(make: Maker, store_name: str, starts: int, retained: int, *,
                      window: int, check_every: int = 1, trace_memory: bool = False,
                      footprint: Callable[[RunStore], Callable[[], int] | None] | None = None,
                      server_cost: Callable[[], tuple[int, int]] | None = None,
                      console: Console | None = None) -> Result:
    """Part 5: `starts` runs started, none finished, under `unfinished_policy(retained)`.
    `len()` is checked against the bound every `check_every` starts; no start may be
    refused (the lease always makes room); memory is measured once the store is full and
    at the end: `footprint(store)()` where it gives a measure (a file's size, a server's
    memory), else this process's (tracemalloc if `trace_memory`, else RSS); the cost per
    start is measured over `window` starts once the store is full and again at the end:
    CPU time (`process_time`), wall time, and `server_cost()` (usec, calls) if given."""
    result = Result("5 unfinished", store_name, console)
    policy = unfinished_policy(retained)
    bound = policy.size_bound
    assert bound is not None
    full = 2 * retained  # by then every run of the first generation has been reaped
    if starts < full + 2 * window:
        raise ValueError(f"{starts} starts cannot fill {retained} and measure {window}")
    if trace_memory:
        tracemalloc.start()
    store = make(policy, Counter())
    measure = footprint(store) if footprint is not None else None
    if measure is None:
        what = "traced" if trace_memory else "RSS"
        base = tracemalloc.get_traced_memory()[0] if trace_memory else _rss()

        def measure() -> int:
            return (tracemalloc.get_traced_memory()[0] if trace_memory else _rss()) - base
    else:
        what = "store"
    refused = biggest = 0
    measured: dict[str, tuple[float, float, float | None]] = {}
    memory: dict[str, int] = {}
    windows = {full: "full", starts - window: "end"}
    middle = (full + window + starts - window) // 2  # memory only: is growth still going?

    def start(i: int) -> None:
        nonlocal refused
        try:
            store.start(f"u{i}")
        except AdmissionRefused:
            refused += 1

    try:
        i = 0
        while i < starts:
            if i == middle:
                memory["middle"] = measure()
            if i in windows:
                name = windows[i]
                memory[name] = measure()
                began = server_cost() if server_cost else None
                wall, cpu = time.perf_counter(), time.process_time()
                for j in range(i, i + window):
                    start(j)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                per_server = None
                if began is not None and server_cost is not None:
                    ended = server_cost()
                    per_server = (ended[0] - began[0]) / max(ended[1] - began[1], 1)
                measured[name] = (cpu / window * 1e6, wall / window * 1e6, per_server)
                i += window
                size = len(store)
                biggest = max(biggest, size)
                if size > bound:
                    result.fail(f"len() is {size} after {i} starts, the bound is {bound}")
                continue
            start(i)
            i += 1
            if i % check_every == 0:
                size = len(store)
                biggest = max(biggest, size)
                if size > bound:
                    result.fail(f"len() is {size} after {i} starts, the bound is {bound}")
                    if len(result.violations) >= KEEP:
                        break
        runs = store.snapshot()
        for rule, what in state_violations(Observation(runs), policy):
            result.fail(f"{rule}: {what}")
        if len(runs) != len(store):
            result.fail(f"len() is {len(store)}, the snapshot holds {len(runs)}")
    finally:
        store.close()
        if trace_memory:
            tracemalloc.stop()
    if refused:
        result.fail(f"{refused} starts refused: the lease should always have made room")
    result.figure("starts", starts)
    result.figure("largest len() / bound", f"{biggest:,} / {bound:,}")
    for name, (cpu, wall, server) in measured.items():
        result.figure(f"us per start at {retained:,} retained ({name}): CPU / wall",
                      f"{cpu:.1f} / {wall:.1f}"
                      + ("" if server is None else f" / server {server:.1f}"))
    result.figures["cost"] = measured
    size_full = memory.get("full", 0)
    growth = memory.get("end", 0) - size_full
    late = memory.get("end", 0) - memory.get("middle", 0)
    result.figure(f"memory ({what}) when full / growth to the end (in its second half)",
                  f"{size_full / 2**20:.2f} MiB / {growth / 2**20:+.2f} MiB "
                  f"({late / 2**20:+.2f} MiB)")
    result.figures["memory"] = (size_full, growth)
    return result


def cost_ratio(small: Result, large: Result) -> dict[str, float]:
    """Cost per start at the large size over the small, from their end windows:
    'cpu', 'wall' and, where measured, 'server'."""
    a, b = small.figures["cost"]["end"], large.figures["cost"]["end"]
    ratios = {"cpu": b[0] / a[0], "wall": b[1] / a[1]}
    if a[2] and b[2]:
        ratios["server"] = b[2] / a[2]
    return ratios


# --- the whole suite ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    sqlite_kills: int = 100
    redis_kills: int = 20
    redis_stalls: int = 10
    thread_seconds: float = 20.0
    malformed: int = 100_000
    starts: dict[str, int] = field(default_factory=lambda: {
        "memory": 1_000_000, "sqlite": 250_000, "redis": 250_000})
    small: int = 1_000
    large: int = 100_000
    window: dict[str, int] = field(default_factory=lambda: {
        "memory": 50_000, "sqlite": 5_000, "redis": 5_000})

    def scaled(self, scale: float) -> Sizes:
        def n(x: int, least: int = 1) -> int:
            return max(least, round(x * scale))
        large = n(self.large, 2 * self.small)
        window = {k: n(v, 500) for k, v in self.window.items()}
        return Sizes(n(self.sqlite_kills), n(self.redis_kills), n(self.redis_stalls),
                     max(1.0, self.thread_seconds * scale), n(self.malformed, 100),
                     {k: max(n(v), 2 * large + 2 * window[k])
                      for k, v in self.starts.items()},
                     self.small, large, window)


def run(sizes: Sizes, stores: Sequence[str], parts: Sequence[int], console: Console
        ) -> list[Result]:
    lab = Lab()
    results: list[Result] = []

    def part(title: str) -> None:
        console.rule(title)

    try:
        if 1 in parts and "sqlite" in stores:
            part(f"1. SQLite: {sizes.sqlite_kills} SIGKILLs of a child mid-workload")
            results.append(sqlite_kills(sizes.sqlite_kills, lab.directory, console=console))
        if 2 in parts and "redis" in stores:
            part(f"2. Redis: {sizes.redis_kills} server SIGKILLs, {sizes.redis_stalls} stalls")
            results.append(redis_kills(sizes.redis_kills, lab.server, console=console))
            results.append(redis_stalls(sizes.redis_stalls, lab.server, console=console))
        if 3 in parts:
            part(f"3. 8 threads x {sizes.thread_seconds:g} s per store, real clock, caps")
            for name in stores:
                results.append(threads_soak(lab.maker(name), name, sizes.thread_seconds,
                                            console=console))
        if 4 in parts:
            part(f"4. {sizes.malformed:,} malformed calls per store")
            for name in stores:
                # no fsync per valid call: this part is about what a refusal leaves
                results.append(malformed_calls(lab.maker(name, durable=False), name,
                                               sizes.malformed,
                                               raw=lab.raw, console=console))
        if 5 in parts:
            part("5. starts that never finish: bounds, memory, cost at "
                 f"{sizes.small:,} and {sizes.large:,} retained")
            for name in stores:
                results.extend(_starts(lab, name, sizes, console))
    finally:
        lab.close()
    return results


def _starts(lab: Lab, name: str, sizes: Sizes, console: Console) -> list[Result]:
    make = lab.maker(name, durable=False)
    server_cost: Callable[[], tuple[int, int]] | None = None
    if name == "redis":
        admin = lab.admin()

        def server_cost() -> tuple[int, int]:
            """redis-server's own CPU time in the script (usec) and its calls so far."""
            stats = admin.info("commandstats").get("cmdstat_evalsha", {})
            return int(stats.get("usec", 0)), int(stats.get("calls", 0))
    every = 1 if name != "redis" else 10
    window = sizes.window[name]
    small = unfinished_starts(make, name, 2 * sizes.small + 2 * window, sizes.small,
                              window=window, check_every=every, footprint=lab.footprint,
                              server_cost=server_cost, console=console)
    large = unfinished_starts(make, name, sizes.starts[name], sizes.large, window=window,
                              check_every=every, footprint=lab.footprint,
                              server_cost=server_cost, console=console)
    ratios = cost_ratio(small, large)
    clock = "wall time (the cost is in redis-server: CPU here is the client's)" \
        if name == "redis" else "CPU time"
    large.figure(f"cost per start at {sizes.large:,} / at {sizes.small:,} retained",
                 ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + f"; judge by {clock}")
    if name == "redis":
        info = admin.info("memory")
        large.figure("redis keys / used memory at the end",
                     f"{admin.dbsize():,} / {int(info['used_memory']) / 2**20:.1f} MiB")
        admin.close()
    return [small, large]


def summary(results: Sequence[Result], console: Console) -> None:
    table = Table(title="make soak: summary")
    for column in ("part", "store", "figure", "value"):
        table.add_column(column)
    for r in results:
        for name, value in r.figures.items():
            if name in ("cost", "memory"):
                continue
            table.add_row(r.part, r.store, Text(name), Text(_shown(value)))
        verdict = Text("ok") if r.ok else Text(f"{len(r.violations) + r.more} violations",
                                               style="red")
        table.add_row(r.part, r.store, Text("verdict", style="bold"), verdict,
                      end_section=True)
    console.print(table)
    for r in results:
        for v in r.violations:
            console.print(f"{r.part} {r.store}: {v}", markup=False, style="red")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbound.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every size by this (0.01: a quick run)")
    parser.add_argument("--store", action="append", choices=STORES,
                        help="only these stores (repeatable)")
    parser.add_argument("--part", action="append", type=int, choices=range(1, 6),
                        help="only these parts (repeatable)")
    args = parser.parse_args(argv)
    console = Console(width=150)
    sizes = Sizes() if args.scale == 1.0 else Sizes().scaled(args.scale)
    began = time.perf_counter()
    results = run(sizes, args.store or STORES, args.part or range(1, 6), console)
    summary(results, console)
    console.print(f"soak: {time.perf_counter() - began:.0f} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
