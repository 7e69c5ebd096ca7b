"""A workload simulator: runs arrive, run, finish and are read back late, through a
retention policy, in virtual time. For comparing policies with numbers.

Discrete events on a heap: a run *arrives* (start, then running), may append events and
heartbeat while it runs, *finishes* with an outcome (or never does: it stops heartbeating
and only the lease can end it), and a late client may *read* it back after a delay. With
`worker_interval`, a cleanup worker sweeps at fixed ticks (the worker as a scheduled step,
not a thread). The clock only jumps from event to event.

The workload (arrivals, durations, outcomes, readers) is described in `model.workload`.
Engines run the same workload:
- `FastEngine` (the default): the policy of `model.spec` kept incrementally: a heap in
  eviction order for the cap, a sorted list in expiry order for the TTL, a heap in lease
  order, so a sweep touches only what it removes. Fast enough for millions of runs.
- `ModelEngine`: `model.spec` itself, step by step. Slow; exact by definition.
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
import heapq
import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from sortedcontainers import SortedList

from model import spec
from model.clock import VirtualClock
from model.errors import RunboundError
from model.lifecycle import Status
from model.policy import Policy
from model.protocol import RunStore, StoreFactory
from model.workload import Bursts, DailyCycle, Fixed, LogNormal, Pareto, Poisson, Workload

RUN_BYTES = 420
EVENT_BYTES = 70

# the workload values are imported from here by the notebooks and tests, with `simulate`
__all__ = ["Bursts", "DailyCycle", "Engine", "FastEngine", "Fixed", "LogNormal", "Metrics",
           "ModelEngine", "Pareto", "Poisson", "StoreEngine", "Workload", "simulate"]

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


class FastEngine:
    """The policy of `model.spec`, incrementally. Counters say what retention did."""

    def __init__(self, policy: Policy,
                 ttl_by_outcome: Mapping[Status, float] | None = None) -> None:
        """`ttl_by_outcome`: a TTL per terminal status, overriding `policy.ttl` (a policy
        the model does not have: here to see what it would buy)."""
        self.policy = policy
        self._is_lazy = policy.lazy
        self.ttls = dict(ttl_by_outcome or {})
        self.active: dict[str, float] = {}              # run -> updated_at
        # run -> (terminated_at, seq, status)
        self.terminal: dict[str, tuple[float, int, Status]] = {}
        self.events: dict[str, int] = {}
        self.total_events = 0
        self._by_end: list[tuple[float, int, str]] = []   # eviction order, lazily cleaned
        # TTL order, kept exact (not lazily cleaned) so that runs past their TTL are
        # counted by one bisection
        self._by_expiry = SortedList()
        self._by_lease: list[tuple[float, str]] = []      # lease order, lazily cleaned
        self._seq = 0                                     # start order, as the model's
        self._started: dict[str, int] = {}
        self.expired = self.evicted = self.reaped = self.refused = self.sweeps = 0
        self.work = 0   # records a sweep examined, removed or reaped

    # The calls. As in the model, a refused call changes nothing, not even the lazy sweep
    # it would have begun with: so each first decides, against the state that sweep would
    # leave, whether it will succeed.
    def start(self, rid: str, now: float) -> bool:
        if rid in self.active and not self._stale_now(rid, now):
            return False
        cap = self.policy.max_active
        if cap is not None and len(self.active) >= cap:
            live = len(self.active)
            if self.policy.lazy and self.policy.stale_after is not None:
                live -= sum(1 for r in self.active if self._stale_now(r, now))
            if live >= cap:
                self.refused += 1
                return False
        self._lazy(now)
        if rid in self.terminal:
            self._drop(rid)
        self.active[rid] = now
        self.events[rid] = 0
        self._seq += 1
        self._started[rid] = self._seq
        if self.policy.stale_after is not None:
            heapq.heappush(self._by_lease, (now, rid))
        return True

    def finish(self, rid: str, status: Status, now: float) -> bool:
        if rid not in self.active or self._stale_now(rid, now):
            return False
        self._lazy(now)
        del self.active[rid]
        self._end(rid, now, status)
        self._cap()
        return True

    def heartbeat(self, rid: str, now: float) -> None:
        if rid in self.active and not self._stale_now(rid, now):
            self._lazy(now)
            self._touch(rid, now)

    def append(self, rid: str, now: float) -> None:
        if rid in self.active and not self._stale_now(rid, now):
            self._lazy(now)
            self._touch(rid, now)
            cap = self.policy.max_events_per_run
            if cap is None or self.events[rid] < cap:
                self.events[rid] += 1
                self.total_events += 1

    def read(self, rid: str, now: float) -> Status | None:
        if rid in self.active:
            return Status.RUNNING
        end = self.terminal.get(rid)
        if end is None or self._past_ttl(end, now):
            return None
        return end[2]

    def sweep(self, now: float) -> None:
        self.sweeps += 1
        after = self.policy.stale_after
        lease = self._by_lease
        if after is not None:
            while lease and lease[0][0] + after <= now:
                updated, rid = heapq.heappop(lease)
                self.work += 1
                if self.active.get(rid) == updated:  # else a stale heap entry
                    del self.active[rid]
                    self._end(rid, now, Status.FAILED)
                    self.reaped += 1
        due = self._by_expiry
        while due and due[0][0] <= now:
            self.work += 1
            self._drop(due[0][2])
            self.expired += 1
        self._cap()

    def ttl_of(self, status: Status) -> float | None:
        return self.ttls.get(status, self.policy.ttl)

    def counts(self, now: float) -> tuple[int, int, int, int]:
        past = self._by_expiry.bisect_right((now, math.inf))
        return len(self.active), len(self.terminal), past, self.total_events

    # internals
    def _stale_now(self, rid: str, now: float) -> bool:
        """Would this call's own lazy sweep reap `rid` (an active run) first?"""
        after = self.policy.stale_after
        return self.policy.lazy and after is not None and self.active[rid] + after <= now

    def _lazy(self, now: float) -> None:
        if self._is_lazy:
            self.sweep(now)

    def _past_ttl(self, end: tuple[float, int, Status], now: float) -> bool:
        ttl = self.ttl_of(end[2])
        return ttl is not None and end[0] + ttl <= now

    def _touch(self, rid: str, now: float) -> None:
        self.active[rid] = now
        if self.policy.stale_after is not None:
            heapq.heappush(self._by_lease, (now, rid))

    def _end(self, rid: str, now: float, status: Status) -> None:
        seq = self._started.pop(rid)
        self.terminal[rid] = (now, seq, status)
        heapq.heappush(self._by_end, (now, seq, rid))
        ttl = self.ttl_of(status)
        if ttl is not None:
            self._by_expiry.add((now + ttl, seq, rid))

    def _cap(self) -> None:
        cap = self.policy.max_terminal
        while cap is not None and len(self.terminal) > cap:
            self.work += 1
            if self._pop(self._by_end):
                self.evicted += 1

    def _pop(self, heap: list[tuple[float, int, str]]) -> bool:
        """Pop the heap's first run and drop it, unless the entry is out of date (the
        run already left, or a later run took its id): the heap is cleaned lazily."""
        _, seq, rid = heapq.heappop(heap)
        now = self.terminal.get(rid)
        if now is None or now[1] != seq:
            return False
        self._drop(rid)
        return True

    def _drop(self, rid: str) -> None:
        end, seq, status = self.terminal.pop(rid)
        ttl = self.ttl_of(status)
        if ttl is not None:
            self._by_expiry.remove((end + ttl, seq, rid))
        self.total_events -= self.events.pop(rid, 0)


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
        self.store.close()
        release = getattr(self.store, "release", None)
        if callable(release):
            release()

    def _try(self, call: Callable[[], object], now: float) -> bool:
        self._at(now)
        try:
            call()
        except RunboundError:
            return False
        return True


class ModelEngine(StoreEngine):
    """`model.spec` itself, through a store that is nothing but the model's state."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(lambda p, c: cast(RunStore, _ModelStore(p, c)), policy)


class _ModelStore:
    """The calls `StoreEngine` makes, each one `model.spec` function on a kept state."""

    def __init__(self, policy: Policy, clock: Callable[[], float]) -> None:
        from model.stateful import MODEL_CALLS  # the one dispatch table of the checks

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

ARRIVE, FINISH, BEAT, APPEND, READ, SWEEP, SAMPLE = range(7)


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
    events: int = 0      # lifecycle events simulated
    calls: int = 0       # store calls made
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

    def summary(self) -> dict[str, float | int | None]:
        return {"starts": self.starts, "refused": self.refused,
                "peak_terminal": self.peak_terminal, "p99_terminal": self.p99_terminal,
                "peak_active": self.peak_active, "peak_bytes": self.peak_bytes,
                "miss_expired": self.miss_rate("expired"),
                "miss_unknown": self.miss_rate("unknown"),
                "stale_reads": self.miss_rate("stale"),
                "mean_overshoot": self.mean_overshoot, "evicted": self.evicted,
                "expired": self.expired, "reaped": self.reaped,
                "work_per_call": self.work_per_call}


def simulate(workload: Workload, policy: Policy, *, engine: Engine | None = None,
             worker_interval: float | None = None, sample_every: float = 60.0) -> Metrics:
    """Run `workload` through `policy` (by default on a `FastEngine`)."""
    eng: Engine = engine if engine is not None else FastEngine(policy)
    rng = random.Random(workload.seed)
    m = Metrics()
    heap: list[tuple[float, int, int, int]] = []  # (time, order, kind, run index)
    order = pending = 0  # pending: workload events still on the heap
    last = 0.0           # the latest workload event scheduled

    def push(t: float, kind: int, run: int) -> None:
        nonlocal order, pending, last
        order += 1
        if kind < SWEEP:
            pending += 1
            last = max(last, t)
        heapq.heappush(heap, (t, order, kind, run))

    # arrivals are already in time order: they wait in a list, not on the heap
    arrivals = list(workload.arrivals.times(rng, workload.runs))
    arrivals.append(math.inf)
    next_run = 0
    last = arrivals[-2] if len(arrivals) > 1 else 0.0
    # after the last workload event, a worker goes on sweeping (and we sampling) until
    # retention is done; without a worker nothing changes any more: the run ends
    linger = (0.0 if worker_interval is None else
              (policy.ttl or 0.0) + (policy.stale_after or 0.0) + worker_interval)
    if worker_interval is not None:
        push(worker_interval, SWEEP, -1)
    # One sample at a random moment of each `sample_every` window (its own generator, so
    # the workload is the same with or without sampling): fixed sample times would alias
    # with a worker ticking at a multiple of them and see only freshly swept states.
    sampler = random.Random(workload.seed + 1)
    window = 0.0
    push(sampler.random() * sample_every, SAMPLE, -1)
    statuses = [s for s, _ in workload.outcomes]
    cumulative = list(itertools.accumulate(w for _, w in workload.outcomes))
    ends: dict[int, tuple[float, Status]] = {}
    ttl_of: Callable[[Status], float | None] = getattr(eng, "ttl_of", lambda _: policy.ttl)
    while heap or next_run < workload.runs:
        if heap and heap[0][0] < arrivals[next_run]:
            now, _, kind, i = heapq.heappop(heap)
            if kind < SWEEP:
                pending -= 1
        else:
            now, kind, i = arrivals[next_run], ARRIVE, next_run
            next_run += 1
        rid = f"r{i}"
        if kind == ARRIVE:
            m.starts += 1
            m.calls += 2
            if not eng.start(rid, now):
                m.refused += 1
                continue
            run_for = workload.durations.draw(rng)
            finishes = rng.random() >= workload.never_finish
            if finishes:
                push(now + run_for, FINISH, i)
            else:
                m.never_finished += 1
            if workload.events_per_run > 0:
                for _ in range(_poisson(rng, workload.events_per_run)):
                    push(now + rng.random() * run_for, APPEND, i)
            if workload.heartbeat_every is not None and finishes:
                for k in range(1, int(run_for / workload.heartbeat_every) + 1):
                    push(now + k * workload.heartbeat_every, BEAT, i)
        elif kind == FINISH:
            m.calls += 1
            status = statuses[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
            if eng.finish(rid, status, now):
                m.finished += 1
                ends[i] = (now, status)
                if rng.random() < workload.late_readers:
                    push(now + workload.read_delay.draw(rng), READ, i)
        elif kind == READ:
            m.calls += 1
            ended, status = ends[i]
            delay, ttl = now - ended, ttl_of(status)
            late = ttl is not None and delay >= ttl
            if eng.read(rid, now) is not None:
                outcome = "stale" if late else "hit"
            else:
                outcome = "expired" if late else "unknown"
            m.reads.append((delay, outcome, status))
        elif kind == APPEND:
            m.calls += 1
            eng.append(rid, now)
        elif kind == BEAT:
            m.calls += 1
            eng.heartbeat(rid, now)
        elif kind == SWEEP:
            m.calls += 1
            eng.sweep(now)
            if pending or next_run < workload.runs or now < last + linger:
                push(now + (worker_interval or 0.0), SWEEP, -1)
            continue
        elif kind == SAMPLE:
            active, terminal, past, events = eng.counts(now)
            m.samples.append((now, active, terminal, past,
                              (active + terminal) * RUN_BYTES + events * EVENT_BYTES))
            if pending or next_run < workload.runs or now < last + linger:
                window += sample_every
                push(window + sampler.random() * sample_every, SAMPLE, -1)
            continue
        m.events += 1
    if isinstance(eng, FastEngine):
        m.expired, m.evicted, m.reaped = eng.expired, eng.evicted, eng.reaped
        m.work, m.sweeps = eng.work, eng.sweeps
    return m


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _quantile(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
