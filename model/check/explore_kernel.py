"""The explorer's kernel: `model.check.explore`'s breadth-first search, on states packed into ints.

`runbound.model.check.explore.explore` runs the spec itself on every edge (`spec.apply`, `Run` and
`ModelState` built by `dataclasses.replace`, the invariants on `Observation`s): plain and
trusted, and about 1,400 states/s. This module makes the same search, in the same order,
on a packed state, and must reach the same result: the same states, transitions, depth,
coverage, witnesses and counterexamples (`tests/test_explore_kernel.py` compares them
world by world). The spec-driven explorer stays the oracle (`runbound explore --oracle`).

Rules of this module:

- A run is one int (`_pack`): its id's index, status, `updated_at`, `terminated_at`, how
  many events it buffers and how many it dropped. A state is the tuple of its runs in
  start order and one int of the node's scalars (`now`, `due`, `since`, worker, closed).
  Times are whole ticks: every time the explorer stamps is a node's `now` (or one second
  behind it, for a planted bug that believes a clock going back). `created_at`, `seq`
  beyond its order and the clock's high-water mark are left out, as the oracle's key
  leaves them out (see `model.check.explore`): a packed state is the oracle's key plus the ids.
- The common calls (starts, transitions, heartbeats, appends, reads, sweeps, the worker,
  ticks, close) are written here against the rules of `runbound.model.spec`, one function each;
  the sweep is made once per state (every mutation of a state sweeps at the same time, so
  its lazy sweep is one table shared by them all). The rare ones go through the spec
  itself (`_slow`): the bad calls and NaN readings of the representative state, and the
  calls a closed store is asked (made once through the spec, then counted again for each
  closed state: L1 comes before anything a state holds).
- A node's calls that read nothing of it but its runs and `now` (all but the worker's,
  the ticks and close) are made once for each (runs, now) and replayed at every other
  node that has them (`_Part`): a replay queues the states those calls reach under the
  node's own scalars and counts the calls, and checks nothing, for the checks of those
  calls read only what the replay shares with the first node, which passed them.
- Every invariant the oracle checks on a common edge is checked here on the packed state,
  and a violation is then reported by the oracle's own check on the same edge rebuilt as
  `Run`s (`_report`), so the property, the message and the path are the oracle's. If the
  oracle sees nothing there, the kernel and the spec disagree: RuntimeError, never a
  silent pass.
- The planted bugs of `runbound.model.check.explore.PLANTED` are planted here too (`plant`), in the
  kernel's own calls, so the differential test shows the kernel's checks catching them
  as the oracle's do.

Written for mypyc (`make kernel` compiles it in place, `runbound/kernel_build.py`); pure
Python where no compiler is: `runbound.model.check.explore_kernel` is the same code either way.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import math
import time
from collections import Counter, deque
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import Final

from runbound.model import spec
from runbound.model.check import explore as oracle
from runbound.model.check.explore import (
    BAD_CALLS,
    PLANTED,
    RUN_NAMES,
    SOMETIMES,
    Action,
    Call,
    Key,
    Node,
    PathViolation,
    Progress,
    Result,
    Transition,
    World,
)
from runbound.model.errors import RunboundError
from runbound.model.lifecycle import TRANSITIONS, Status
from runbound.model.records import Run

# --- the packed run -----------------------------------------------------------------------
#
# bits 0-2 the id's index in RUN_NAMES; 3-5 the status (index in Status); 6-15
# updated_at + 1; 16-25 terminated_at + 2, 0 for None; 26-31 events buffered; 32-41 dropped.
# `run >> 3` is the run without its name: the key under symmetry.

STATUSES: Final = tuple(Status)
PENDING: Final = 0
FAILED: Final = STATUSES.index(Status.FAILED)
#: bit sets of status indexes (ints, not tuples of bools: a shift is cheaper compiled)
ACTIVE: Final = sum(1 << i for i, s in enumerate(STATUSES) if s.active)
TERMINAL: Final = sum(1 << i for i, s in enumerate(STATUSES) if s.terminal)
#: status index * 8 -> bit set of the status indexes `transition` may move it to
ALLOWED: Final = sum(sum(1 << STATUSES.index(t) for t in TRANSITIONS[s]) << 8 * i
                     for i, s in enumerate(STATUSES))
#: the latest tick a packed time holds, the most events or drops a run can count
MAX_TICK: Final = 1000
MAX_EVENTS: Final = 63
MAX_DROPPED: Final = 1023
#: states between two calls of `progress` (the oracle's `PROGRESS_EVERY`, scaled to a
#: kernel about a hundred times faster: a few calls a second, compiled or not)
PROGRESS_EVERY: Final = 10_000


def _active(status: int) -> bool:
    return ACTIVE >> status & 1 == 1


def _terminal(status: int) -> bool:
    return TERMINAL >> status & 1 == 1


def _pack(rid: int, status: int, updated: int, terminated: int, events: int,
          dropped: int) -> int:
    """`terminated` is -2 for None (the field holds it + 2)."""
    return (rid | status << 3 | (updated + 1) << 6 | (terminated + 2) << 16 | events << 26
            | dropped << 32)


def _rid(run: int) -> int:
    return run & 7


def _status(run: int) -> int:
    return (run >> 3) & 7


def _updated(run: int) -> int:
    return ((run >> 6) & 1023) - 1


def _term_raw(run: int) -> int:
    """terminated_at + 2; 0 iff it is None."""
    return (run >> 16) & 1023


def _events(run: int) -> int:
    return (run >> 26) & 63


def _dropped(run: int) -> int:
    return (run >> 32) & 1023


# --- the node's scalars -------------------------------------------------------------------
#
# bits 0-11 now; 12-23 due + 1 (0: no worker); 24-35 since + 1; 36 worker; 37 closed.

_CLOSED: Final = 1 << 37
_WORKER: Final = 1 << 36


def _scalars(now: int, due: int, since: int, worker: bool, closed: bool) -> int:
    """`due` and `since` are -1 for None."""
    return (now | (due + 1) << 12 | (since + 1) << 24 | (_WORKER if worker else 0)
            | (_CLOSED if closed else 0))


def _now(scal: int) -> int:
    return scal & 4095


def _due(scal: int) -> int:
    return ((scal >> 12) & 4095) - 1


def _since(scal: int) -> int:
    return ((scal >> 24) & 4095) - 1


# --- calls and outcomes -------------------------------------------------------------------

OPS: Final = ("start", "transition", "heartbeat", "append_event", "get", "list_runs",
              "prune", "worker", "start_cleanup_worker", "stop_cleanup_worker", "tick",
              "close")
# each its index in OPS, one Final literal each: compiled, a name unpacked from a range is
# looked up in the module's dict on every use, a Final literal is a constant
START: Final = 0
TRANSITION: Final = 1
HEARTBEAT: Final = 2
APPEND: Final = 3
GET: Final = 4
LIST: Final = 5
PRUNE: Final = 6
WORKER: Final = 7
START_W: Final = 8
STOP_W: Final = 9
TICK: Final = 10
CLOSE: Final = 11
#: outcome codes: accepted, or the error class (UnknownRun split by its rule, V1 or V2)
OUTCOMES: Final = ("ok", "RunAlreadyActive", "AdmissionRefused", "IllegalTransition",
                   "NotActive", "UnknownRun", "UnknownRun", "StoreClosed", "InvalidArgument",
                   "ClockError")
OK: Final = 0
ALREADY: Final = 1
ADMISSION: Final = 2
ILLEGAL: Final = 3
NOT_ACTIVE: Final = 4
V1: Final = 5
V2: Final = 6
_NO: Final = 10  # len(OUTCOMES)
if [OPS[i] for i in (START, TRANSITION, HEARTBEAT, APPEND, GET, LIST, PRUNE, WORKER, START_W,
                     STOP_W, TICK, CLOSE)] != list(OPS) or len(OUTCOMES) != _NO:
    raise ImportError("the kernel's call codes are not the indexes of OPS")
_BACK: Final = 1 << 11

PLANTS: Final = {name: i + 1 for i, name in enumerate(PLANTED)}
_EVICTS_ACTIVE: Final = PLANTS["evicts-active"]
_ADMITS_ONE_MORE: Final = PLANTS["admits-one-more"]
_IDLE_WORKER: Final = PLANTS["idle-worker"]
_IGNORES_THE_MARK: Final = PLANTS["ignores-the-mark"]

_SOMETIMES_NAMES: Final = tuple(SOMETIMES)
_EDGE_NAMES: Final = tuple(tuple(f"{a}->{b}" for b in STATUSES) for a in STATUSES)

KKey = tuple[tuple[int, ...], int]
#: the states of one key's runs: their scalars' part of the key -> how each was reached
Links = dict[int, tuple[KKey, int] | None]

#: the SHA-256 of the source this module was compiled from; "" in the source itself
#: (`runbound.kernel_build` writes it into the copy it compiles)
SOURCE_SHA256: Final = ""


class _Stop(Exception):
    """The search ends here: a violation, or `max_states` reached."""


class _Part:
    """What a run of a node's calls comes to when none of them reads more of the node
    than its runs and `now`: every call the node makes but the worker's, the ticks and
    close. Many nodes share their (runs, now) and differ only in the worker, `due` and
    `since` (19,240 open nodes of the default world, 5,759 (runs, now)): the calls are
    made once, at the first such node, and replayed at the others. A replay only counts
    and queues: the checks of a step (I4-I9, I15, the sometimes-properties) read nothing
    a replay changes, so they found nothing the first time or the search ended there."""

    def __init__(self) -> None:
        #: the (call, outcome) counter index of each call, in order
        self.seq: list[int] = []
        #: the accepted calls that changed the runs: (index in `seq`, code, runs after,
        #: their part of the key, the states of those runs reached so far)
        self.succ: list[tuple[int, int, tuple[int, ...], tuple[int, ...], Links]] = []
        #: how many nodes replayed it (its counts are added at the end)
        self.uses = 0
        #: the runs swept at `now` (the worker's step reads them)
        self.swept: tuple[int, ...] = ()
        #: the worker's step from these runs at `now` was checked (I4-I9 read nothing else)
        self.worker_checked = False


class Search:
    """One breadth-first search of one world; `run` makes it and returns the Result."""

    def __init__(self, world: World, plant: str | None, max_states: int,
                 max_depth: int | None, progress: Progress | None = None) -> None:
        p = world.policy
        if world.horizon + world.interval >= MAX_TICK - 2 or world.events > MAX_EVENTS:
            raise ValueError(f"the kernel holds ticks below {MAX_TICK - 2} and at most "
                             f"{MAX_EVENTS} appends per run: use the oracle (--oracle)")
        if plant is not None and plant not in PLANTS:
            raise KeyError(f"no planted bug {plant!r}")
        self.world = world
        self.ids = world.ids
        self.horizon = world.horizon
        self.interval = world.interval
        self.events = world.events
        self.symmetry = world.symmetry
        self.has_ttl = p.ttl is not None
        self.ttl = float(p.ttl) if p.ttl is not None else 0.0
        self.has_stale = p.stale_after is not None
        self.stale = float(p.stale_after) if p.stale_after is not None else 0.0
        self.cap = -1 if p.max_terminal is None else p.max_terminal
        self.max_active = -1 if p.max_active is None else p.max_active
        self.max_events = -1 if p.max_events_per_run is None else p.max_events_per_run
        self.bound = -1 if p.size_bound is None else p.size_bound
        self.lazy = p.lazy
        self.plant = 0 if plant is None else PLANTS[plant]
        self.admit = self.max_active + (
            1 if self.plant == _ADMITS_ONE_MORE and self.max_active >= 0 else 0)
        self.max_states = max_states
        self.max_depth = -1 if max_depth is None else max_depth
        self.progress = progress
        self.orbits = [math.perm(world.ids, k) if world.symmetry else 1
                       for k in range(world.ids + 1)]
        self.calls: dict[str, Call] = {op: spec.apply for op in (*spec.OPERATIONS, "worker")}
        if plant is not None:
            self.calls.update(PLANTED[plant][1])
        self.result = Result(world)
        #: the Result's counts while the search runs (a native attribute each: the
        #: Result is a dataclass, whose attributes a compiled kernel reaches by name)
        self.transitions = 0
        self.named_states = 0
        self.depth = 0
        self.counts = [0] * (len(OPS) * _NO)
        self.statuses = 0
        self.edges: set[tuple[int, int]] = set()
        self.pending: set[str] = set(SOMETIMES)
        #: every state reached, by its key's two parts: the runs' and the scalars'. A
        #: replay finds a successor's runs once for all the nodes it is replayed at.
        self.parents: dict[tuple[int, ...], Links] = {}
        self.states = 0
        #: the states of the runs of the node being expanded
        self.here: Links = {}
        self.frontier: deque[tuple[tuple[int, ...], int, KKey, int, Links]] = deque()
        self.slow_actions: list[Action] = []
        #: what one closed state's calls add up to: (transitions, outcomes), or None yet
        self.closed_counts: tuple[int, Counter[tuple[str, str]]] | None = None
        #: closed states after the first: their calls are counted at the end
        self.closed_more = 0
        #: (runs, now) -> the two parts of a node's calls that read only those (`_Part`)
        self.parts: dict[tuple[tuple[int, ...], int], tuple[_Part, _Part]] = {}
        #: the part being made for the first time, or None
        self.recording: _Part | None = None
        #: the part being replayed, and where, when the search stopped in it
        self.replaying: _Part | None = None
        self.replay_at = 0

    # --- the search -----------------------------------------------------------------------

    def run(self) -> Result:
        result = self.result
        started = time.perf_counter()
        root: tuple[int, ...] = ()
        root_links = self.links(root)
        root_links[0] = None
        self.states = 1
        self.frontier.append((root, 0, (root, 0), 0, root_links))
        self.named_states = self.orbits[0]
        # The search keeps every state, key and part it makes, none in a cycle: the cyclic
        # collector would walk them all again and again for nothing (see `explore`).
        collecting = gc.isenabled()
        gc.disable()
        progress = self.progress
        report_at = PROGRESS_EVERY
        try:
            while self.frontier:
                if progress is not None and self.states >= report_at:  # per node: cheap
                    progress(self.states, self.depth)
                    report_at = self.states + PROGRESS_EVERY
                runs, scal, node_key, depth, self.here = self.frontier.popleft()
                if self.max_depth >= 0 and depth >= self.max_depth:
                    result.complete = False
                    continue
                if scal & _CLOSED:
                    self.expand_closed(runs, scal, node_key, depth)
                else:
                    self.expand(runs, scal, node_key, depth)
        except _Stop:
            part = self.replaying
            if part is not None:  # the calls of the replay up to the one that stopped it
                self.transitions += self.replay_at + 1
                for i in part.seq[:self.replay_at + 1]:
                    self.counts[i] += 1
        finally:
            if collecting:
                gc.enable()
        for a, b in self.parts.values():
            for part in (a, b):
                if part.uses:
                    self.transitions += len(part.seq) * part.uses
                    for i in part.seq:
                        self.counts[i] += part.uses
        result.states = self.states
        result.transitions += self.transitions
        result.named_states = self.named_states
        result.depth = self.depth
        result.seconds = time.perf_counter() - started
        self.finish_coverage()
        return result

    def runs_key(self, runs: tuple[int, ...]) -> tuple[int, ...]:
        return tuple([r >> 3 for r in runs]) if self.symmetry else runs

    def links(self, runs_key: tuple[int, ...]) -> Links:
        found = self.parents.get(runs_key)
        if found is None:
            found = {}
            self.parents[runs_key] = found
        return found

    def expand(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int) -> None:
        """Every action of `model.check.explore.actions`, in its order, on an open state."""
        now = _now(scal)
        worker = bool(scal & _WORKER)
        due = _due(scal)
        parts = self.parts.get((runs, now))
        if parts is None:
            first = _Part()
            self.recording = first
            first.swept = self.runs_calls(runs, scal, nk, depth)
            self.recording = None
        else:
            first = parts[0]
            self.replay(first, scal, nk, depth)
        swept = first.swept
        if worker:
            after = runs if self.plant == _IDLE_WORKER else swept
            nscal = _scalars(now, now + self.interval, _since(scal), True, False)
            self.take(runs, scal, nk, depth, WORKER, WORKER, OK, after, nscal, -1, -1, False,
                      first.worker_checked)
            first.worker_checked = True
        nscal = scal if worker else _scalars(now, now + self.interval, now, True, False)
        self.take(runs, scal, nk, depth, START_W, START_W, OK, runs, nscal, -1, -1)
        self.take(runs, scal, nk, depth, STOP_W, STOP_W, OK, runs, _scalars(now, -1, -1, False,
                                                                            False), -1, -1)
        if now < self.horizon and (due < 0 or now < due):
            self.take(runs, scal, nk, depth, TICK, TICK, OK, runs, scal + 1, -1, -1)
        if parts is None:
            second = _Part()
            self.recording = second
            self.readings(runs, scal, nk, depth, swept)
            self.recording = None
            self.parts[(runs, now)] = (first, second)
        else:
            self.replay(parts[1], scal, nk, depth)
        if (len(runs) == 1 and _rid(runs[0]) == 0 and now == 0 and _status(runs[0]) == PENDING
                and _events(runs[0]) == 0 and not worker):
            extras = [Action("len"), Action("snapshot"),
                      *oracle._clocked_once(self.world, "nan"), *BAD_CALLS]
            self.slow(runs, scal, nk, depth, extras)
        self.take(runs, scal, nk, depth, CLOSE, CLOSE, OK, runs,
                  _scalars(now, -1, -1, False, True), -1, -1)

    def runs_calls(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int
                   ) -> tuple[int, ...]:
        """The node's calls before the worker's, which read only its runs and `now`: the
        starts, the calls on each run and prune. Returns the runs swept at `now`."""
        now = _now(scal)
        swept = self.sweep(runs, now)
        base = swept if self.lazy else runs
        present = 0
        for r in runs:
            present |= 1 << _rid(r)
        unused = [i for i in range(self.ids) if not present & (1 << i)]
        starts = [_rid(r) for r in runs]
        if unused:
            starts += unused[:1] if self.symmetry else unused
        for rid in starts:
            self.start(runs, scal, nk, depth, base, rid, now)
        if unused:
            rid = unused[0]
            self.take(runs, scal, nk, depth, HEARTBEAT | rid << 5, HEARTBEAT, V1, runs, scal,
                      rid, -1)
        for run in runs:
            rid = _rid(run)
            i = self.visible(base, rid, now)  # one lookup for the run's seven calls
            for target in range(len(STATUSES)):
                self.transition(runs, scal, nk, depth, base, rid, i, target, now)
            self.heartbeat(runs, scal, nk, depth, base, rid, i, now, 0)
            if _events(run) + _dropped(run) < self.events:
                self.append(runs, scal, nk, depth, base, rid, i, now)
        self.take(runs, scal, nk, depth, PRUNE, PRUNE, OK, swept, scal, -1, -1,
                  any(self.stale_at(r, now) for r in swept))  # I15, after an explicit sweep
        return swept

    def readings(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int,
                 swept: tuple[int, ...]) -> None:
        """The node's readings one second back, which read only its runs and `now`:
        clamped to `now` (C1), unless the mark is ignored."""
        now = _now(scal)
        back = now - 1 if self.plant == _IGNORES_THE_MARK else now
        back_base = swept if self.lazy else runs
        if back != now and self.lazy:
            back_base = self.sweep(runs, back)
        for run in runs:
            rid = _rid(run)
            if _active(_status(run)):
                self.heartbeat(runs, scal, nk, depth, back_base, rid,
                               self.visible(back_base, rid, back), back, _BACK)
            else:
                self.read(runs, scal, nk, depth, rid, back, _BACK)
        self.listing(runs, scal, nk, depth, back)

    def replay(self, part: _Part, scal: int, nk: KKey, depth: int) -> None:
        """`part`, made at another node of the same runs and `now`, at this one: its
        states queued under this node's scalars where new; its counts added at the end."""
        self.replaying = part
        for at, code, after, runs_key, links in part.succ:
            if scal not in links:
                self.replay_at = at
                self.add(after, scal, (runs_key, scal), links, nk, code, depth)
        self.replaying = None
        part.uses += 1

    def expand_closed(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int) -> None:
        """A closed store's calls: through the spec once; for every later closed state the
        same outcomes are counted (L1 is checked before anything the state holds)."""
        if self.closed_counts is None:
            before = self.result.transitions, Counter(self.result.coverage.outcomes)
            self.slow(runs, scal, nk, depth, list(oracle._after_close(self.world)))
            outcomes = Counter(self.result.coverage.outcomes)
            outcomes.subtract(before[1])
            self.closed_counts = (self.result.transitions - before[0], +outcomes)
            return
        self.closed_more += 1

    # --- the calls, as model.spec makes them ----------------------------------------------

    def expired(self, run: int, now: int) -> bool:
        raw = _term_raw(run)
        return raw != 0 and self.has_ttl and not now < raw - 2 + self.ttl

    def stale_at(self, run: int, now: int) -> bool:
        return (_active(_status(run)) and self.has_stale
                and not now < _updated(run) + self.stale)

    def sweep(self, runs: tuple[int, ...], now: int) -> tuple[int, ...]:
        """`spec._sweep`: reap the stale, drop the expired, then the cap."""
        kept: list[int] = []
        changed = False
        for run in runs:
            if self.stale_at(run, now):
                run = _pack(_rid(run), FAILED, now, now, _events(run), _dropped(run))
                changed = True
            if self.expired(run, now):
                changed = True
            else:
                kept.append(run)
        out = tuple(kept) if changed else runs
        return self.enforce_cap(out)

    def enforce_cap(self, runs: tuple[int, ...]) -> tuple[int, ...]:
        """`spec.enforce_cap`: drop the oldest terminated (then oldest started) beyond it."""
        if self.cap < 0:
            return runs
        order = [(_term_raw(r), i) for i, r in enumerate(runs) if _terminal(_status(r))]
        excess = len(order) - self.cap
        if excess <= 0:
            return runs
        order.sort()
        victims = {i for _, i in order[:excess]}
        return tuple([r for i, r in enumerate(runs) if i not in victims])

    def visible(self, runs: tuple[int, ...], rid: int, now: int) -> int:
        """The index of run `rid` in `runs`, or -V1 (absent), -V2 (past its TTL)."""
        for i, r in enumerate(runs):
            if _rid(r) == rid:
                return -V2 if self.expired(r, now) else i
        return -V1

    def start(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int,
              base: tuple[int, ...], rid: int, now: int) -> None:
        code = START | rid << 5
        rest: list[int] = []
        for r in base:
            if _rid(r) != rid:
                rest.append(r)
            elif _active(_status(r)):
                self.take(runs, scal, nk, depth, code, START, ALREADY, runs, scal, rid, -1)
                return
        if self.admit >= 0 and sum([1 for r in rest if _active(_status(r))]) >= self.admit:
            self.take(runs, scal, nk, depth, code, START, ADMISSION, runs, scal, rid, -1)
            return
        rest.append(_pack(rid, PENDING, now, -2, 0, 0))
        self.take(runs, scal, nk, depth, code, START, OK, tuple(rest), scal, rid, -1)

    def transition(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int,
                   base: tuple[int, ...], rid: int, i: int, target: int, now: int) -> None:
        """`i`: `visible(base, rid, now)`."""
        code = TRANSITION | rid << 5 | target << 8
        if i < 0:
            self.take(runs, scal, nk, depth, code, TRANSITION, -i, runs, scal, rid, target)
            return
        old = base[i]
        if not ALLOWED >> (8 * _status(old) + target) & 1:
            self.take(runs, scal, nk, depth, code, TRANSITION, ILLEGAL, runs, scal, rid,
                      target)
            return
        new = _pack(rid, target, now, now if _terminal(target) else -2, _events(old),
                    _dropped(old))
        after = (*base[:i], new, *base[i + 1:])
        if _terminal(target):
            after = self.enforce_cap(after)
            if self.plant == _EVICTS_ACTIVE and self.cap >= 0 and len(after) > self.cap:
                after = after[len(after) - self.cap:]
        self.take(runs, scal, nk, depth, code, TRANSITION, OK, after, scal, rid, target)

    def heartbeat(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int,
                  base: tuple[int, ...], rid: int, i: int, now: int, back: int) -> None:
        code = HEARTBEAT | rid << 5 | back
        if i < 0:
            self.take(runs, scal, nk, depth, code, HEARTBEAT, -i, runs, scal, rid, -1)
            return
        old = base[i]
        if not _active(_status(old)):
            self.take(runs, scal, nk, depth, code, HEARTBEAT, NOT_ACTIVE, runs, scal, rid, -1)
            return
        new = _pack(rid, _status(old), now, _term_raw(old) - 2, _events(old), _dropped(old))
        self.take(runs, scal, nk, depth, code, HEARTBEAT, OK, (*base[:i], new, *base[i + 1:]),
                  scal, rid, -1)

    def append(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int,
               base: tuple[int, ...], rid: int, i: int, now: int) -> None:
        code = APPEND | rid << 5
        if i < 0:
            self.take(runs, scal, nk, depth, code, APPEND, -i, runs, scal, rid, -1)
            return
        old = base[i]
        if not _active(_status(old)):
            self.take(runs, scal, nk, depth, code, APPEND, NOT_ACTIVE, runs, scal, rid, -1)
            return
        events, dropped = _events(old) + 1, _dropped(old)
        if self.max_events >= 0 and events > self.max_events:
            dropped += events - self.max_events
            events = self.max_events
        new = _pack(rid, _status(old), now, _term_raw(old) - 2, events, dropped)
        self.take(runs, scal, nk, depth, code, APPEND, OK, (*base[:i], new, *base[i + 1:]),
                  scal, rid, -1)

    def read(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int, rid: int,
             now: int, back: int) -> None:
        """A get: never sweeps. What it returns is judged at the node's time (I5)."""
        i = self.visible(runs, rid, now)
        outcome = -i if i < 0 else OK
        self.take(runs, scal, nk, depth, GET | rid << 5 | back, GET, outcome, runs, scal, rid,
                  -1, outcome == OK and self.expired(runs[i], _now(scal)))

    def listing(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int, now: int
                ) -> None:
        judged = _now(scal)
        self.take(runs, scal, nk, depth, LIST | _BACK, LIST, OK, runs, scal, -1, -1,
                  any(not self.expired(r, now) and self.expired(r, judged) for r in runs))

    # --- one step taken -------------------------------------------------------------------

    def take(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int, code: int, op: int,
             outcome: int, after: tuple[int, ...], ascal: int, rid: int, target: int,
             broken: bool = False, checked: bool = False) -> None:
        """Count the step, check it, and queue the state it reaches if new: the body of
        `runbound.model.check.explore.explore`'s loop, in its order (coverage, sometimes, the step's
        invariants, the state's). `broken`: the caller saw the step break an invariant of
        what a call returns or leaves (I5, I15); `checked`: this very step (the same runs,
        call and `now`) was checked before and passed."""
        self.transitions += 1
        self.counts[op * _NO + outcome] += 1
        moved = runs != after
        recording = self.recording
        if recording is not None:
            recording.seq.append(op * _NO + outcome)
            if outcome == OK and moved:
                runs_key = self.runs_key(after)
                recording.succ.append((len(recording.seq) - 1, code, after, runs_key,
                                       self.links(runs_key)))
        bad = (outcome == OK and moved and not checked
               and self.diff(runs, scal, op, after, rid, target))
        bad = bad or broken
        if self.pending:
            self.sometimes(runs, scal, nk, code, op, outcome, after, rid)
        if bad:
            self.report(runs, scal, nk, code)
        if outcome == OK:
            if moved:
                self.enqueue(after, ascal, nk, code, depth)
            elif ascal != scal:  # the same runs: their part of the key is the node's
                sk = _scal_key(ascal)
                if sk not in self.here:
                    self.add(after, ascal, (nk[0], sk), self.here, nk, code, depth)

    def enqueue(self, after: tuple[int, ...], ascal: int, nk: KKey, code: int, depth: int
                ) -> None:
        runs_key = self.runs_key(after)
        links = self.links(runs_key)
        sk = _scal_key(ascal)
        if sk not in links:
            self.add(after, ascal, (runs_key, sk), links, nk, code, depth)

    def add(self, after: tuple[int, ...], ascal: int, k: KKey, links: Links, nk: KKey,
            code: int, depth: int) -> None:
        """A new state `k` (`links`: the states of its runs), reached by `code` from `nk`:
        checked and queued."""
        links[k[1]] = (nk, code)
        self.states += 1
        result = self.result
        if self.state_violated(after, ascal):
            self.report_state(after, ascal, k)
        self.named_states += self.orbits[len(after)]
        if depth + 1 > self.depth:
            self.depth = depth + 1
        if self.states >= self.max_states:
            result.complete = False
            raise _Stop
        self.frontier.append((after, ascal, k, depth + 1, links))

    def diff(self, runs: tuple[int, ...], scal: int, op: int, after: tuple[int, ...],
             rid: int, target: int) -> bool:
        """An accepted step that changed the runs: its coverage, and True iff it breaks a
        step invariant, I4, I7, I8 or I9 (`invariants.step_violations`)."""
        now = _now(scal)
        finished = op == TRANSITION and _terminal(target)
        bad = False
        for k, was in enumerate(runs):
            wid = _rid(was)
            cur = _find(after, wid, k)
            if cur < 0:
                if (_active(_status(was)) and not (finished and wid == rid)
                        and not self.stale_at(was, now)):
                    bad = True  # I4
                continue
            if op == START and wid == rid:
                continue  # a new run under an old id
            if cur == was:
                continue  # unchanged: none of I7-I9 can fire
            a, b = _status(was), _status(cur)
            if _term_raw(was) != 0 and _term_raw(cur) != _term_raw(was):
                bad = True  # I7
            if _updated(cur) < _updated(was):
                bad = True  # I8
            if a != b:
                if not ALLOWED >> (8 * a + b) & 1:
                    bad = True  # I9
                if op != START:
                    self.edges.add((a, b))
        if self.statuses != 31:
            for r in after:
                self.statuses |= 1 << _status(r)
        return bad

    def sometimes(self, runs: tuple[int, ...], scal: int, nk: KKey, code: int, op: int,
                  outcome: int, after: tuple[int, ...], rid: int) -> None:
        """The sometimes-properties of `model.check.explore.SOMETIMES` this step reaches."""
        hit: list[str] = []
        now = _now(scal)
        if outcome != OK:
            hit.append(OUTCOMES[outcome])
            if outcome == V1:
                hit.append("V1-absent")
            elif outcome == V2:
                hit.append("V2-expired")
            if op == GET and code & _BACK:  # refused: visible one second back?
                run = -1
                for r in runs:
                    if _rid(r) == rid:
                        run = r
                if run >= 0 and not self.expired(run, now - 1):
                    hit.append("back-hides-expired")
        elif runs != after:
            self.changed_sometimes(runs, scal, op, after, rid, hit)
        if outcome == OK and op == HEARTBEAT and code & _BACK:
            for r in runs:
                if _rid(r) == rid and _updated(r) > now - 1:
                    hit.append("back-keeps-updated_at")
        for name in hit:
            if name in self.pending:
                self.pending.discard(name)
                self.result.reached[name] = (*self.path(nk), self.action(code))

    def changed_sometimes(self, runs: tuple[int, ...], scal: int, op: int,
                          after: tuple[int, ...], rid: int, hit: list[str]) -> None:
        now = _now(scal)
        since = _since(scal)
        in_time = op == WORKER and since >= 0 and now < self.horizon
        active_kept = False
        evicted = False
        for k, was in enumerate(runs):
            wid = _rid(was)
            cur = _find(after, wid, k)
            if cur < 0:  # gone
                if self.expired(was, now):
                    hit.append("ttl-expiry")
                else:
                    hit.append("cap-eviction")
                    evicted = True
                if (in_time and self.has_ttl and _term_raw(was) != 0 and _deadline_passes(
                        _term_raw(was) - 2 + self.ttl, since, self.interval, now)):
                    hit.append("E1-deadline")
                continue
            if op == START and wid == rid:
                continue  # a new run (its own seq)
            a, b = _status(was), _status(cur)
            if _active(a) and _active(b):
                active_kept = True
            if a == b:
                continue
            hit.append(_EDGE_NAMES[a][b])
            if _active(a) and b == FAILED and not (op == TRANSITION and wid == rid):
                hit.append("lease-reap")
            if _active(a) and in_time and self.has_stale and _deadline_passes(
                    _updated(was) + self.stale, since, self.interval, now):
                hit.append("E2-deadline")
        if evicted and active_kept:
            hit.append("eviction-beside-active")

    def state_violated(self, runs: tuple[int, ...], scal: int) -> bool:
        """I1, I2, I3, I6, I12 and (the worker running) E1, E2: `oracle.check_state`."""
        terminal = active = 0
        since = _since(scal)
        now = _now(scal)
        for r in runs:
            s = _status(r)
            if _terminal(s):
                terminal += 1
            else:
                active += 1
            if (_term_raw(r) != 0) != _terminal(s):
                return True
            if 0 <= self.max_events < _events(r):
                return True
            if since >= 0:
                if _term_raw(r) != 0 and self.has_ttl:
                    if now > max(_term_raw(r) - 2 + self.ttl, since) + self.interval:
                        return True
                elif (_active(s) and self.has_stale
                      and now > max(_updated(r) + self.stale, since) + self.interval):
                    return True
        return ((0 <= self.cap < terminal) or (0 <= self.bound < len(runs))
                or (0 <= self.max_active < active))

    # --- the rare calls, through the spec -------------------------------------------------

    def slow(self, runs: tuple[int, ...], scal: int, nk: KKey, depth: int,
             actions: list[Action]) -> None:
        """`actions` in the node, each made and judged by `runbound.model.check.explore` itself."""
        world, result = self.world, self.result
        node = self.node(runs, scal)
        for action in actions:
            nxt, outcome = oracle.step(node, action, world, self.calls)
            result.transitions += 1
            refused = isinstance(outcome, RunboundError)
            m, n = nxt.model, node.model
            t = Transition(node, action, nxt, outcome, refused,
                           m.runs is not n.runs or m.worker is not n.worker
                           or m.closed is not n.closed)
            oracle._cover(result.coverage, t)
            self.slow_actions.append(action)
            code = -len(self.slow_actions)
            for name in [n for n in _SOMETIMES_NAMES
                         if n in self.pending and SOMETIMES[n].holds(t, world)]:
                self.pending.discard(name)
                result.reached[name] = (*self.path(nk), action)
            found = oracle.check_step(t, world)
            if found:
                prop, message = found[0]
                result.violation = PathViolation(prop, message, (*self.path(nk), action))
                raise _Stop
            if refused or (not t.changed and nxt.due == node.due and nxt.now == node.now):
                continue
            after, ascal = self.packed(nxt)
            self.enqueue(after, ascal, nk, code, depth)

    def node(self, runs: tuple[int, ...], scal: int) -> Node:
        """The packed state as `model.check.explore` holds it (its mark at `now`: the oracle's
        key leaves the mark out, and no call here reads below it)."""
        now = float(_now(scal))
        model = spec.ModelState(
            policy=self.world.policy, runs=tuple(_run(r, i + 1) for i, r in enumerate(runs)),
            next_seq=len(runs) + 1, clock=now, worker=bool(scal & _WORKER),
            closed=bool(scal & _CLOSED))
        due, since = _due(scal), _since(scal)
        return Node(model, now, None if due < 0 else float(due),
                    None if since < 0 else float(since))

    def packed(self, node: Node) -> tuple[tuple[int, ...], int]:
        runs = tuple(_unrun(r) for r in node.model.runs)
        return runs, _scalars(_tick(node.now), -1 if node.due is None else _tick(node.due),
                              -1 if node.since is None else _tick(node.since),
                              node.model.worker, node.model.closed)

    # --- reports: the oracle's words on the same step -------------------------------------

    def report(self, runs: tuple[int, ...], scal: int, nk: KKey, code: int) -> None:
        """The kernel found a step invariant broken on the step `code` from this node:
        rebuild the step and let `oracle.check_step` say what."""
        node = self.node(runs, scal)
        action = self.action(code)
        nxt, outcome = oracle.step(node, action, self.world, self.calls)
        refused = isinstance(outcome, RunboundError)
        m, n = nxt.model, node.model
        t = Transition(node, action, nxt, outcome, refused, m.runs != n.runs
                       or m.worker is not n.worker or m.closed is not n.closed)
        found = oracle.check_step(t, self.world)
        if not found:
            raise RuntimeError(f"the kernel saw a step invariant broken by "
                               f"{oracle.show_action(action)} after {self.path(nk)}; the "
                               "spec's check does not: the kernel and the spec disagree")
        prop, message = found[0]
        self.result.violation = PathViolation(prop, message, (*self.path(nk), action))
        raise _Stop

    def report_state(self, runs: tuple[int, ...], scal: int, k: KKey) -> None:
        found = oracle.check_state(self.node(runs, scal), self.world)
        if not found:
            raise RuntimeError(f"the kernel saw a state invariant broken after "
                               f"{self.path(k)}; the spec's check does not: the kernel and "
                               "the spec disagree")
        prop, message = found[0]
        self.result.violation = PathViolation(prop, message, self.path(k))
        raise _Stop

    def path(self, k: KKey) -> tuple[Action, ...]:
        steps: list[Action] = []
        link = self.parents[k[0]][k[1]]
        while link is not None:
            k, code = link
            steps.append(self.action(code))
            link = self.parents[k[0]][k[1]]
        return tuple(reversed(steps))

    def action(self, code: int) -> Action:
        if code < 0:
            return self.slow_actions[-code - 1]
        op, rid, target = code & 31, (code >> 5) & 7, (code >> 8) & 7
        reading = "back" if code & _BACK else ""
        name = RUN_NAMES[rid]
        if op == TRANSITION:
            return Action("transition", (name, STATUSES[target]), reading)
        if op == APPEND:
            return Action("append_event", (name, "e"), reading)
        if op in (START, HEARTBEAT, GET):
            return Action(OPS[op], (name,), reading)
        if op == LIST:
            return Action("list_runs", (self.ids + 1,), reading)
        if op == START_W:
            return Action("start_cleanup_worker", (float(self.interval),), reading)
        return Action(OPS[op], (), reading)

    def finish_coverage(self) -> None:
        cov = self.result.coverage
        if self.closed_counts is not None and self.closed_more:
            transitions, outcomes = self.closed_counts
            self.result.transitions += transitions * self.closed_more
            for pair, n in outcomes.items():
                cov.outcomes[pair] += n * self.closed_more
        for i, n in enumerate(self.counts):
            if n:
                cov.outcomes[(OPS[i // _NO], OUTCOMES[i % _NO])] += n
        cov.edges |= {(STATUSES[a], STATUSES[b]) for a, b in self.edges}
        cov.statuses |= {s for i, s in enumerate(STATUSES) if self.statuses >> i & 1}

    def oracle_keys(self) -> set[Key]:
        """Every state reached, as `runbound.model.check.explore.key` names it (for the differential
        test)."""
        return {oracle.key(self.node(*_unkey((runs_key, sk), self.symmetry)), self.symmetry)
                for runs_key, links in self.parents.items() for sk in links}


def _scal_key(scal: int) -> int:
    """The scalars' part of a state's key: a closed store's is only that it is closed (L1
    comes before C1: a closed store never reads its clock)."""
    return _CLOSED if scal & _CLOSED else scal


def _find(runs: tuple[int, ...], rid: int, hint: int) -> int:
    """The run `rid` of `runs`, or -1; looked for at `hint` first (a step moves runs
    only by removing some before them)."""
    if hint < len(runs) and _rid(runs[hint]) == rid:
        return runs[hint]
    for r in runs:
        if _rid(r) == rid:
            return r
    return -1


def _deadline_passes(at: float, since: int, interval: int, now: int) -> bool:
    """`runbound.model.check.explore._worker_in_time`: the deadline max(at, since) + interval falls
    before the next tick."""
    return max(at, since) + interval < now + 1


def _run(run: int, seq: int) -> Run:
    raw = _term_raw(run)
    updated = float(_updated(run))
    return Run(run_id=RUN_NAMES[_rid(run)], status=STATUSES[_status(run)],
                    created_at=updated, updated_at=updated,
                    terminated_at=None if raw == 0 else float(raw - 2),
                    events=("e",) * _events(run), dropped_events=_dropped(run), seq=seq)


def _tick(t: float) -> int:
    if t != int(t) or not -1 <= t < MAX_TICK - 2:
        raise ValueError(f"the kernel holds whole ticks only, got {t!r}")
    return int(t)


def _unrun(run: Run) -> int:
    if any(e != "e" for e in run.events) or run.run_id not in RUN_NAMES:
        raise ValueError(f"the kernel cannot hold {run!r}")
    return _pack(RUN_NAMES.index(run.run_id), STATUSES.index(run.status),
                 _tick(run.updated_at),
                 -2 if run.terminated_at is None else _tick(run.terminated_at),
                 len(run.events), run.dropped_events)


def _unkey(k: KKey, symmetry: bool) -> tuple[tuple[int, ...], int]:
    """A kernel key back to a packed state (under symmetry the runs get ids in start
    order: `runbound.model.check.explore.key` drops them again)."""
    runs, scal = k
    if symmetry:
        runs = tuple([r << 3 | i for i, r in enumerate(runs)])
    return runs, scal


def search(world: World, plant: str | None = None, max_states: int = 2_000_000,
           max_depth: int | None = None, progress: Progress | None = None) -> Search:
    """The search, made by this module's code (compiled or not): its Result is
    `.result`."""
    made = Search(world, plant, max_states, max_depth, progress)
    made.run()
    return made


def compiled() -> ModuleType | None:
    """The kernel compiled by `make kernel`, if it was built from this very source."""
    try:
        module = importlib.import_module("runbound.model.check._explore_kernel_c")
    except ImportError:
        return None
    if not str(module.__file__).endswith(tuple(EXTENSION_SUFFIXES)):
        return None  # the copy `make kernel` compiles, caught mid-build
    source = Path(__file__).with_name("explore_kernel.py").read_bytes()
    return module if hashlib.sha256(source).hexdigest() == module.SOURCE_SHA256 else None


def engine() -> str:
    """Which code `explore` runs: "compiled" (mypyc) or "python"."""
    return "compiled" if compiled() is not None else "python"


def explore(world: World, *, plant: str | None = None, max_states: int = 2_000_000,
            max_depth: int | None = None, pure: bool = False,
            progress: Progress | None = None) -> Result:
    """`model.check.explore.explore` on the kernel: the same Result, faster. The compiled kernel
    where one is built from this source, unless `pure`. `progress(states, depth)` is
    called every `PROGRESS_EVERY` states or so."""
    module = None if pure else compiled()
    run = search if module is None else module.search
    # No cyclic collection until the search is dropped: it holds hundreds of thousands
    # of objects, none in a cycle, which the collector would walk as they are made and
    # once more when it is enabled again if they were still alive (measured: a third of
    # the compiled kernel's time on the default world). Reference counting frees them
    # all; the few cycles of the slow path (a refusal's traceback) wait for the collector.
    collecting = gc.isenabled()
    gc.disable()
    try:
        result: Result = run(world, plant, max_states, max_depth, progress).result
    finally:
        if collecting:
            gc.enable()
    return result
