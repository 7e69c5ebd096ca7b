"""A workload simulator: runs arrive, run, finish and are read back late, through a
retention policy, in virtual time. For comparing policies with numbers.

The workload (`runbound.model.sim.workload`) is drawn up front, and so is every moment something
happens: a run *arrives* (start, then running), may append events and heartbeat while it
runs, *finishes* with an outcome (or never does: it stops heartbeating and only the lease
can end it), and a late client may *read* it back after a delay; with `worker_interval`
a cleanup worker sweeps at fixed ticks (the worker as a scheduled step, not a thread),
and a sample of the store is taken once in every `sample_every` seconds. All of it is one
array of events sorted once (by time, then kind, then run), so the loop only applies
them; the clock jumps from event to event. An event of a run whose start was refused is
not made (that run never existed for its client), nor a read of a run that did not
finish.

Engines run the same events:
- `FastEngine` (the default): the policy of `runbound.model.spec` fused into the event loop, on
  run indices rather than ids. Terminal runs are kept in one list in eviction order
  (`spec.eviction_key`: terminated_at, then start order) with a head index: the cap
  evicts from its head, and so does the TTL where that is exact -- when every terminal
  status has the same TTL, expiry order is eviction order (terminated_at + ttl is
  monotone in terminated_at), so one pass over the head does both. With a TTL per
  outcome (`ttl_by_outcome`) it is not, and the TTL falls back to a sorted list in
  expiry order (the runs it removes are skipped when the cap reaches them). Active runs
  sit in a heap in lease order, cleaned lazily. A sweep touches only what it removes.
- `ModelEngine`: `runbound.model.spec` itself, call by call. Slow; exact by definition.
- `StoreEngine`: any `RunStore` on a `VirtualClock` -- the reference, SQLite, Redis, the
  seed replicas. Reads and refusals are what the store answers.
The tests run one workload through all three and require the same numbers, so the fast
engine's results are the model's.

A missed late read is told apart by the truth the simulator knows: *expired* if the
client came back after the run's TTL ran out (the policy promised nothing more), *unknown*
if it came back within the TTL and the run was gone anyway (dropped by the cap: the case
users complain of). Bytes are approximate: `RUN_BYTES` per retained run (what `make
bench` measures for a MemoryRunStore record with its indexes, about 420) plus
`EVENT_BYTES` per buffered event (a short str and its slot in the ring buffer).
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
from sortedcontainers import SortedList

from runbound.model import spec
from runbound.model.calls import MODEL_CALLS
from runbound.model.clock import VirtualClock
from runbound.model.errors import RunboundError
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.protocol import RunStore, StoreFactory, dispose
from runbound.model.sim.workload import Drawn, Workload, draw

RUN_BYTES = 420
EVENT_BYTES = 70

# --- engines ---------------------------------------------------------------------------


class Engine(Protocol):
    def start(self, rid: str, now: float) -> bool: ...          # False: refused
    def finish(self, rid: str, status: Status, now: float) -> bool: ...  # False: gone/ended
    def heartbeat(self, rid: str, now: float) -> None: ...
    def append(self, rid: str, now: float) -> None: ...
    def read(self, rid: str, now: float) -> Status | None: ...  # None: not visible
    def sweep(self, now: float) -> None: ...
    def counts(self, now: float) -> tuple[int, int, int, int]: ...
    # (active, terminal retained, terminal retained past their TTL, events buffered)


@dataclass(frozen=True)
class FastEngine:
    """The policy of `runbound.model.spec`, fused into the simulator's loop (see the module's
    docstring). `ttl_by_outcome`: a TTL per terminal status, overriding `policy.ttl` (a
    policy the model does not have: here to see what it would buy)."""

    policy: Policy
    ttl_by_outcome: Mapping[Status, float] | None = None
    #: False: keep the TTL in its own sorted list even where the eviction order would
    #: serve it (the fallback, held to the model on a single TTL by the tests)
    shared_order: bool = True

    def ttl_of(self, status: Status) -> float | None:
        return (self.ttl_by_outcome or {}).get(status, self.policy.ttl)


class StoreEngine:
    """Any RunStore, on a VirtualClock the simulator moves."""

    def __init__(self, factory: StoreFactory, policy: Policy) -> None:
        self.clock = VirtualClock(0.0)
        self.store: RunStore = factory(policy, self.clock)
        self.policy = policy

    def _at(self, now: float) -> None:
        ahead = now - self.clock()
        if ahead > 0:
            self.clock.advance(ahead)

    def start(self, rid: str, now: float) -> bool:
        self._at(now)
        try:
            self.store.start(rid)
        except RunboundError:
            return False
        with contextlib.suppress(RunboundError):  # a store born running may refuse this
            self.store.transition(rid, Status.RUNNING)
        return True

    def finish(self, rid: str, status: Status, now: float) -> bool:
        return self._try(lambda: self.store.transition(rid, status), now)

    def heartbeat(self, rid: str, now: float) -> None:
        self._try(lambda: self.store.heartbeat(rid), now)

    def append(self, rid: str, now: float) -> None:
        self._try(lambda: self.store.append_event(rid, "e"), now)

    def read(self, rid: str, now: float) -> Status | None:
        self._at(now)
        try:
            return self.store.get(rid).status
        except RunboundError:
            return None

    def sweep(self, now: float) -> None:
        self._at(now)
        self.store.prune()

    def counts(self, now: float) -> tuple[int, int, int, int]:
        runs = self.store.snapshot()
        active = sum(1 for r in runs if r.active)
        past = sum(1 for r in runs if spec.expired(r, self.policy, now))
        return active, len(runs) - active, past, sum(len(r.events) for r in runs)

    def close(self) -> None:
        dispose(self.store)

    def _try(self, call: Callable[[], object], now: float) -> bool:
        self._at(now)
        try:
            call()
        except RunboundError:
            return False
        return True


class ModelEngine(StoreEngine):
    """`runbound.model.spec` itself, through a store that is nothing but the model's state."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(lambda p, c: cast(RunStore, _ModelStore(p, c)), policy)


class _ModelStore:
    """The calls `StoreEngine` makes, each one `runbound.model.spec` function on a kept state."""

    def __init__(self, policy: Policy, clock: Callable[[], float]) -> None:

        self.state, self.clock, self._calls = spec.initial(policy), clock, MODEL_CALLS

    def _do(self, op: str, *args: object) -> object:
        self.state, result = self._calls[op](self.state, self.clock(), args)
        return result

    def start(self, run_id: str) -> object:
        return self._do("start", run_id)

    def transition(self, run_id: str, status: Status) -> object:
        return self._do("transition", run_id, status)

    def heartbeat(self, run_id: str) -> object:
        return self._do("heartbeat", run_id)

    def append_event(self, run_id: str, payload: str) -> object:
        return self._do("append_event", run_id, payload)

    def prune(self) -> object:
        return self._do("prune")

    def get(self, run_id: str) -> object:
        return spec.get(self.state, run_id, self.clock())

    def snapshot(self) -> tuple[object, ...]:
        return self.state.runs

    def close(self) -> None:
        pass


# --- the simulation ----------------------------------------------------------------------

# Event kinds, numbered in the order events at one instant are applied: a run's arrival
# before its own events, a finish before the read it allows, the worker's sweep after the
# calls of its instant, the sample last (it sees the instant's outcome).
ARRIVE, APPEND, BEAT, FINISH, READ, SWEEP, SAMPLE = range(7)


@dataclass
class Metrics:
    """What one simulation measured. One sample is taken at a random moment of every
    `sample_every` seconds, so means over samples are time averages."""

    starts: int = 0
    refused: int = 0
    finished: int = 0
    never_finished: int = 0
    #: per late read: (delay, outcome, the run's status). Outcome: "hit"; "stale" (seen,
    #: though past its TTL: the seeds' defect); "expired" (gone, past its TTL); "unknown"
    #: (gone within its TTL: the cap dropped it)
    reads: list[tuple[float, str, Status]] = field(default_factory=list)
    #: (time, active, terminal retained, terminal past TTL still retained, bytes)
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    events: int = 0      # lifecycle events simulated (the calls of the workload made)
    calls: int = 0       # store calls made (a start is two: start, then running)
    expired: int | None = None   # from the fast engine only
    evicted: int | None = None
    reaped: int | None = None
    work: int | None = None
    sweeps: int | None = None

    def _column(self, i: int) -> list[int]:
        return [int(s[i]) for s in self.samples]

    @property
    def peak_terminal(self) -> int:
        return max(self._column(2), default=0)

    @property
    def p99_terminal(self) -> int:
        return _quantile(self._column(2), 0.99)

    @property
    def peak_active(self) -> int:
        return max(self._column(1), default=0)

    @property
    def peak_bytes(self) -> int:
        return max(self._column(4), default=0)

    @property
    def mean_overshoot(self) -> float:
        """Mean number of retained terminal runs already past their TTL."""
        col = self._column(3)
        return sum(col) / len(col) if col else 0.0

    def miss_rate(self, kind: str | None = None, status: Status | None = None) -> float:
        """Fraction of late reads (of runs ending in `status`) that missed (or, with
        `kind`, that ended so: "expired", "unknown", "stale")."""
        reads = [o for _, o, s in self.reads if status is None or s is status]
        if not reads:
            return 0.0
        wanted = {"expired", "unknown"} if kind is None else {kind}
        return sum(1 for o in reads if o in wanted) / len(reads)

    def miss_by_delay(self, edges: Sequence[float]) -> list[tuple[float, int, float, float]]:
        """Per delay bin [edges[i], edges[i+1]): (left edge, reads, expired rate,
        unknown rate)."""
        bins: list[list[int]] = [[0, 0, 0] for _ in range(len(edges) - 1)]
        for delay, outcome, _ in self.reads:
            i = bisect.bisect_right(edges, delay) - 1
            if 0 <= i < len(bins):
                bins[i][0] += 1
                bins[i][1] += outcome == "expired"
                bins[i][2] += outcome == "unknown"
        return [(edges[i], n, e / n if n else 0.0, u / n if n else 0.0)
                for i, (n, e, u) in enumerate(bins)]

    @property
    def work_per_call(self) -> float | None:
        return None if self.work is None else self.work / max(self.calls, 1)


@dataclass(frozen=True)
class Schedule:
    """Every event of one simulation, in the order they are applied: parallel lists of
    time, kind and run index (-1 for the worker's sweeps and the samples)."""

    times: list[float]
    kinds: list[int]
    runs: list[int]


def schedule(work: Workload, drawn: Drawn, linger: float, worker_interval: float | None,
             sample_every: float) -> Schedule:
    """The events of `drawn`, the worker's ticks and the samples, sorted once. After the
    last workload event a worker goes on sweeping (and we sampling) for `linger` seconds,
    until retention is done; without a worker nothing changes any more: the run ends."""
    finish_at = drawn.arrive + drawn.run_for
    finishing = np.flatnonzero(drawn.finishes)
    reading = np.flatnonzero(drawn.finishes & drawn.reads)
    read_at = finish_at[reading] + drawn.read_delay[reading]
    workload: list[tuple[Any, int, Any]] = [(drawn.arrive, ARRIVE, np.arange(work.runs)),
                                            (drawn.append_at, APPEND, drawn.append_run),
                                            (drawn.beat_at, BEAT, drawn.beat_run),
                                            (finish_at[finishing], FINISH, finishing),
                                            (read_at, READ, reading)]
    last = max((float(t.max()) for t, _, _ in workload if len(t)), default=0.0)
    until = last + linger
    parts = list(workload)  # then the worker's ticks and the samples, of no run (None)
    if worker_interval is not None:
        # tick k at k * interval, the next one while the last was before `until`
        ticks = worker_interval * np.arange(1, math.floor(until / worker_interval) + 3)
        parts.append((ticks[:1 + int(np.searchsorted(ticks, until))], SWEEP, None))
    # One sample at a random moment of each `sample_every` window, drawn from a generator
    # of its own (the workload is the same with or without sampling): fixed sample times
    # would alias with a worker ticking at a multiple of them and see only freshly swept
    # states.
    windows = math.floor(until / sample_every) + 3
    moments = (np.arange(windows) + np.random.default_rng(work.seed + 1).random(windows)
               ) * sample_every
    parts.append((moments[:1 + int(np.searchsorted(moments, until))], SAMPLE, None))
    times = np.concatenate([t for t, _, _ in parts])
    kinds = np.concatenate([np.full(len(t), k, np.int64) for t, k, _ in parts])
    runs = np.concatenate([np.full(len(t), -1, np.int64) if r is None else r
                           for t, _, r in parts])
    # stable: ties keep the concatenation's order, which is kind, then run
    order = np.argsort(times, kind="stable")
    return Schedule(times[order].tolist(), kinds[order].tolist(), runs[order].tolist())


def simulate(workload: Workload, policy: Policy, *,
             engine: Engine | FastEngine | None = None,
             worker_interval: float | None = None, sample_every: float = 60.0) -> Metrics:
    """Run `workload` through `policy` (by default on a `FastEngine`)."""
    fast = FastEngine(policy) if engine is None else engine
    ttl_of: Callable[[Status], float | None] = (
        fast.ttl_of if isinstance(fast, FastEngine) else lambda _: policy.ttl)
    drawn = draw(workload)
    longest = max((t for t in map(ttl_of, Status) if t is not None), default=0.0)
    linger = (0.0 if worker_interval is None else
              longest + (policy.stale_after or 0.0) + worker_interval)
    events = schedule(workload, drawn, linger, worker_interval, sample_every)
    statuses = np.array([s for s, _ in workload.outcomes] + [None], dtype=object)
    outcome: list[Status] = statuses[drawn.outcome].tolist()
    never: list[int] = np.flatnonzero(~drawn.finishes).tolist()
    if isinstance(fast, FastEngine):
        ttl = [math.inf if t is None else t for t in (ttl_of(s) for s, _ in workload.outcomes)]
        lifetime: list[float] = np.array([*ttl, math.inf])[drawn.outcome].tolist()
        # the calls each run would make after its start: finish, appends, heartbeats
        per_run = (drawn.finishes + np.bincount(drawn.append_run, minlength=workload.runs)
                   + np.bincount(drawn.beat_run, minlength=workload.runs))
        # The loop allocates only tuples that hold no references back (no cycles); the
        # collector, run every few hundred of them, would walk the engine's big lists
        # again and again: a third of the time. It is back on when the loop ends.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _fused(fast, events, outcome, lifetime, never, per_run)
        finally:
            if collecting:
                gc.enable()
    return _drive(fast, events, outcome, never, workload.runs, ttl_of)


def _drive(eng: Engine, events: Schedule, outcome: list[Status], never: list[int],
           runs: int, ttl_of: Callable[[Status], float | None]) -> Metrics:
    """The events, each one call on `eng`."""
    m = Metrics()
    began = [False] * runs     # its start was admitted
    ended: list[float | None] = [None] * runs   # when it finished (None: it did not)
    for now, kind, i in zip(events.times, events.kinds, events.runs, strict=True):
        if kind == SAMPLE:
            active, terminal, past, buffered = eng.counts(now)
            m.samples.append((now, active, terminal, past,
                              (active + terminal) * RUN_BYTES + buffered * EVENT_BYTES))
            continue
        if kind == SWEEP:
            m.calls += 1
            eng.sweep(now)
            continue
        rid = f"r{i}"
        if kind == ARRIVE:
            m.starts += 1
            m.events += 1
            m.calls += 1
            if not eng.start(rid, now):
                m.refused += 1
                continue
            m.calls += 1
            began[i] = True
            continue
        if not began[i]:
            continue
        if kind == FINISH:
            if eng.finish(rid, outcome[i], now):
                m.finished += 1
                ended[i] = now
        elif kind == READ:
            end = ended[i]
            if end is None:
                continue
            status, delay = outcome[i], now - end
            ttl = ttl_of(status)
            late = ttl is not None and delay >= ttl
            if eng.read(rid, now) is not None:
                m.reads.append((delay, "stale" if late else "hit", status))
            else:
                m.reads.append((delay, "expired" if late else "unknown", status))
        elif kind == APPEND:
            eng.append(rid, now)
        else:
            eng.heartbeat(rid, now)
        m.events += 1
        m.calls += 1
    m.never_finished = sum(1 for i in never if began[i])
    return m


def _fused(fast: FastEngine, events: Schedule, outcome: list[Status],
           lifetime: list[float], never: list[int], per_run: Any) -> Metrics:
    """The events, applied to the policy kept incrementally in this function's locals.
    This is the simulator's hot path (`make bench`), so it is one loop with the steps
    written inline rather than called, an absent limit is infinity rather than None (one
    comparison, no test), and `due_at` says when a sweep would next change anything.
    Each mutation follows the model's order: decide whether the call succeeds (a refused
    call changes nothing, not even the lazy sweep it would have begun with, so this is
    decided against the state that sweep would leave), then the sweep (step 4), then
    the call, then the cap. `lifetime`: each run's TTL, should it finish (inf: none);
    `per_run`: how many calls each would make after its start."""
    inf = math.inf
    runs = len(per_run)
    policy = fast.policy
    lazy, leased = policy.lazy, policy.stale_after is not None
    after = inf if policy.stale_after is None else policy.stale_after
    max_active = inf if policy.max_active is None else policy.max_active
    cap = inf if policy.max_terminal is None else policy.max_terminal
    ring = inf if policy.max_events_per_run is None else policy.max_events_per_run
    ttls = {s: fast.ttl_of(s) for s in Status if s.terminal}
    # one TTL for every terminal status: expiry order is eviction order (see above)
    shared = fast.shared_order and len(set(ttls.values())) == 1
    ttl = inf if not shared or policy.ttl is None else policy.ttl
    by_expiry: Any = None if shared else SortedList()  # (expires at, run): the fallback
    failed = ttls[Status.FAILED]
    reaped_ttl = inf if failed is None else failed     # a reaped run failed

    state = [0] * runs     # 0 not started (or refused), 1 active, 2 terminal, 3 dropped
    end = [0.0] * runs     # terminated_at
    held = [0] * runs      # events buffered
    done = [False] * runs  # it finished (so a late client may read it)
    live: dict[int, float] = {}          # active run -> updated_at
    lease: list[tuple[float, int]] = []  # (updated_at, run): lease order, lazily cleaned
    order: list[int] = []  # terminal runs in eviction order; retained from `head` on
    head = terminal = buffered = 0
    due_at = inf
    expired = evicted = reaped = work = sweeps = touched = 0
    refused: list[int] = []
    reads: list[tuple[float, str, Status]] = []
    samples: list[tuple[float, int, int, int, int]] = []

    def key(j: int) -> tuple[float, int]:
        return end[j], j   # spec.eviction_key: seq grows with the run index

    def soonest() -> float:
        t = inf if head == len(order) else end[order[head]] + ttl
        if lease:
            t = min(t, lease[0][0] + after)
        if by_expiry:
            t = min(t, by_expiry[0][0])
        return t

    for now, kind, i in zip(events.times, events.kinds, events.runs, strict=True):
        # step 5's verdict first: a refused call changes nothing
        if kind == READ:
            if done[i]:  # else it did not finish: no client comes back for it
                delay, expires = now - end[i], lifetime[i]
                late = delay >= expires
                if state[i] == 2 and now < end[i] + expires:
                    reads.append((delay, "stale" if late else "hit", outcome[i]))
                else:
                    reads.append((delay, "expired" if late else "unknown", outcome[i]))
            continue
        if kind == ARRIVE:
            if len(live) >= max_active:
                alive = len(live)
                if lazy and leased:  # its lazy sweep would reap some first
                    alive -= sum(1 for u in live.values() if u + after <= now)
                if alive >= max_active:
                    refused.append(i)
                    continue
        elif kind < SWEEP:
            at = state[i]
            if not at:
                continue  # a refused run: its client never had it
            if at != 1 or (lazy and live[i] + after <= now):
                continue  # not active, or its own lazy sweep would reap it first
        elif kind == SWEEP:
            sweeps += 1
        else:
            past = (by_expiry.bisect_right((now, runs)) if by_expiry is not None else
                    bisect.bisect_right(order, now, lo=head, key=lambda j: end[j] + ttl)
                    - head)
            active = len(live)
            samples.append((now, active, terminal, past,
                            (active + terminal) * RUN_BYTES + buffered * EVENT_BYTES))
            continue

        # step 4: the worker's sweep, or this call's lazy one (spec._sweep): reap stale
        # active runs, drop expired terminal ones (the cap comes last, below)
        if due_at <= now and (lazy or kind == SWEEP):
            while lease and lease[0][0] + after <= now:
                updated, j = heapq.heappop(lease)
                work += 1
                if live.get(j) == updated:  # else an entry a later touch left behind
                    del live[j]
                    state[j], end[j] = 2, now
                    terminal += 1
                    reaped += 1
                    if head == len(order) or end[order[-1]] < now or order[-1] < j:
                        order.append(j)
                    else:  # a run of this instant with a larger seq is in the way
                        bisect.insort(order, j, lo=head, key=key)
                    if by_expiry is not None and reaped_ttl < inf:
                        by_expiry.add((now + reaped_ttl, j))
            while by_expiry and by_expiry[0][0] <= now:
                j = by_expiry.pop(0)[1]
                work += 1
                state[j] = 3
                terminal -= 1
                buffered -= held[j]
                expired += 1
            while head < len(order) and end[order[head]] + ttl <= now:
                j = order[head]
                head += 1
                work += 1
                state[j] = 3
                terminal -= 1
                buffered -= held[j]
                expired += 1
            due_at = soonest()

        # the call itself
        if kind == ARRIVE:
            state[i] = 1
            live[i] = now
            if leased:
                heapq.heappush(lease, (now, i))
                due_at = min(due_at, lease[0][0] + after)
        elif kind == FINISH:
            del live[i]
            state[i] = 2
            end[i] = now
            terminal += 1
            done[i] = True
            if head == len(order):
                order.append(i)
                due_at = min(due_at, now + ttl)
            elif end[order[-1]] < now or order[-1] < i:
                order.append(i)
            else:  # a run reaped at this instant with a larger seq is in the way
                bisect.insort(order, i, lo=head, key=key)
                due_at = soonest()
            if by_expiry is not None and lifetime[i] < inf:
                by_expiry.add((now + lifetime[i], i))
                due_at = min(due_at, now + lifetime[i])
        elif kind != SWEEP:
            touched += 1
            live[i] = now   # a heartbeat or an event renews the lease
            if leased:
                heapq.heappush(lease, (now, i))
                due_at = min(due_at, lease[0][0] + after)
            if kind == APPEND and held[i] < ring:
                held[i] += 1
                buffered += 1

        # the cap (spec.enforce_cap), after a finish or a sweep that reaped: the oldest
        # terminal runs beyond it go. Once after both is the same as after each: the
        # runs evicted are the oldest of the same set either way.
        if terminal > cap:
            while terminal > cap:
                j = order[head]
                head += 1
                work += 1
                if state[j] == 2:  # else the TTL's fallback took it already
                    if by_expiry is not None:
                        expires = lifetime[j] if done[j] else reaped_ttl
                        if expires < inf:
                            by_expiry.remove((end[j] + expires, j))
                    state[j] = 3
                    terminal -= 1
                    buffered -= held[j]
                    evicted += 1
            due_at = inf if head == len(order) else end[order[head]] + ttl
            if lease or by_expiry:
                due_at = soonest()

    admitted, finished = runs - len(refused), sum(done)
    # the calls of admitted runs (finish, append, heartbeat) whether refused or not
    made = int(per_run.sum() - per_run[refused].sum()) + len(reads)
    # a start is two calls (start, then running); the worker's sweeps are calls too
    return Metrics(starts=runs, refused=len(refused), finished=finished,
                   never_finished=sum(1 for i in never if state[i]), reads=reads,
                   samples=samples, events=runs + made, calls=runs + admitted + made + sweeps,
                   expired=expired, evicted=evicted, reaped=reaped, work=work,
                   sweeps=sweeps + (admitted + finished + touched if lazy else 0))


def _quantile(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
