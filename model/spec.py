"""The executable specification: a run store as pure functions of (state, arguments, now).

Rules of this module:
- Every operation takes the state and returns `(new_state, result)`, or raises a
  RunboundError. States are immutable, so a refused call cannot have changed anything
  (invariant I10) -- including the lazy sweep it may have started: that sweep belongs to
  the call and goes with it.
- No threads, no I/O, no clock. Time is the `now` argument. The state remembers the
  latest `now` a mutation saw and never goes back from it (`_now`), so a clock that steps
  backwards cannot un-expire a run or decrease `updated_at`.
- Retention lives in three functions used everywhere: `expired` (the one TTL test),
  `stale` (the one lease test) and `eviction_key` (the one eviction order).
- Written for CrossHair as well as for readers: plain tuples, no dict iteration order, no
  hidden state.

Stores implement the same operations with locks, indexes and storage; the checkers in
this package hold them to these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from model.errors import (
    AdmissionRefused,
    InvalidArgument,
    NotActive,
    RunAlreadyActive,
    StoreClosed,
    UnknownRun,
)
from model.lifecycle import Status, as_status, check_transition
from model.policy import Policy
from model.records import MAX_RUN_ID_LENGTH, Page, Run, SweepResult


@dataclass(frozen=True, slots=True)
class ModelState:
    policy: Policy
    #: retained runs in start order (ascending `seq`), visible or not.
    runs: tuple[Run, ...] = ()
    next_seq: int = 1
    #: the latest `now` a mutation used: effective time never goes below it.
    clock: float = -math.inf
    #: True iff a cleanup worker is running (at most one: I11).
    worker: bool = False
    closed: bool = False


def initial(policy: Policy) -> ModelState:
    return ModelState(policy=policy)


# --- the three retention tests ---------------------------------------------------------

def expired(run: Run, policy: Policy, now: float) -> bool:
    """True iff `run` is terminal and its TTL has run out: it is invisible (I5).

    pre: (run.terminated_at is not None) == run.terminal
    post: not (__return__ and run.active)
    """
    return (run.terminated_at is not None and policy.ttl is not None
            and not now < run.terminated_at + policy.ttl)


def stale(run: Run, policy: Policy, now: float) -> bool:
    """True iff `run` is active and has not been updated for `stale_after`.

    post: not (__return__ and run.terminal)
    """
    return (run.status.active and policy.stale_after is not None
            and not now < run.updated_at + policy.stale_after)


def eviction_key(run: Run) -> tuple[float, int]:
    """The terminal cap evicts the smallest key first: oldest terminated, then oldest
    started. Changing retention order means changing this function only."""
    assert run.terminated_at is not None
    return (run.terminated_at, run.seq)


# --- sweeping ------------------------------------------------------------------------

def enforce_cap(runs: tuple[Run, ...], policy: Policy) -> tuple[tuple[Run, ...], tuple[str, ...]]:
    """Drop the oldest terminal runs beyond `max_terminal` (I1). Never an active one (I4).
    It relies on run ids being unique (CrossHair found that it must: two runs with one id
    would go together), which every ModelState keeps.

    pre: all(a.run_id != b.run_id for i, a in enumerate(runs) for b in runs[:i])
    pre: all((r.terminated_at is not None) == r.terminal for r in runs)
    post: policy.max_terminal is None or sum(r.terminal for r in __return__[0]) <= policy.max_terminal
    post: all(r in __return__[0] for r in runs if r.active)
    post: len(__return__[0]) + len(__return__[1]) == len(runs)
    """
    if policy.max_terminal is None:
        return runs, ()
    terminal = sorted((r for r in runs if r.terminal), key=eviction_key)
    excess = len(terminal) - policy.max_terminal
    if excess <= 0:
        return runs, ()
    victims = frozenset(r.run_id for r in terminal[:excess])
    return tuple(r for r in runs if r.run_id not in victims), tuple(sorted(victims))


def _sweep(runs: tuple[Run, ...], policy: Policy, now: float
           ) -> tuple[tuple[Run, ...], SweepResult]:
    """Reap stale active runs (to FAILED, never deleted), drop expired terminal runs, then
    enforce the cap. Reaping comes first so a reaped run's TTL starts now.

    pre: all(a.run_id != b.run_id for i, a in enumerate(runs) for b in runs[:i])
    pre: all((r.terminated_at is not None) == r.terminal for r in runs)
    pre: all(r.updated_at <= now and (r.terminated_at or 0.0) <= now for r in runs)
    post: not any(stale(r, policy, now) or expired(r, policy, now) for r in __return__[0])
    post: all(r in __return__[0] or r.run_id in __return__[1].reaped for r in runs if r.active)
    """
    reaped: list[str] = []
    kept: list[Run] = []
    for run in runs:
        if stale(run, policy, now):
            run = replace(run, status=Status.FAILED, updated_at=now, terminated_at=now)
            reaped.append(run.run_id)
        kept.append(run)
    gone = tuple(sorted(r.run_id for r in kept if expired(r, policy, now)))
    after, evicted = enforce_cap(tuple(r for r in kept if r.run_id not in gone), policy)
    return after, SweepResult(reaped=tuple(sorted(reaped)), expired=gone, evicted=evicted)


def sweep(state: ModelState, now: float) -> tuple[ModelState, SweepResult]:
    """`prune()`: one sweep whatever the sweep mode; what the cleanup worker runs."""
    _open(state)
    now = _now(state, now)
    runs, result = _sweep(state.runs, state.policy, now)
    return replace(state, runs=runs, clock=now), result


# --- mutations -----------------------------------------------------------------------

def start(state: ModelState, run_id: object, now: float) -> tuple[ModelState, Run]:
    """Start a run PENDING. An active run with the id: RunAlreadyActive (S1). A terminal
    one, visible or not, is replaced. `max_active` active runs: AdmissionRefused (S2)."""
    rid = check_run_id(run_id)
    state, now = _begin(state, now)
    old = _find(state.runs, rid)
    if old is not None and old.active:
        raise RunAlreadyActive(rid, old.status, "S1: a run with this id is already active")
    runs = tuple(r for r in state.runs if r.run_id != rid)
    policy = state.policy
    if policy.max_active is not None:
        active = sum(1 for r in runs if r.active)
        if active >= policy.max_active:
            raise AdmissionRefused(
                rid, "absent" if old is None else old.status,
                f"S2: {active} active runs, max_active is {policy.max_active}")
    run = Run(run_id=rid, status=Status.PENDING, created_at=now, updated_at=now,
              seq=state.next_seq)
    return replace(state, runs=(*runs, run), next_seq=state.next_seq + 1, clock=now), run


def transition(state: ModelState, run_id: object, status: object, now: float
               ) -> tuple[ModelState, Run]:
    """Move a visible run along the table (T1). Into a terminal status: stamp
    `terminated_at` and enforce the cap at once, whatever the sweep mode."""
    rid = check_run_id(run_id)
    target = as_status(rid, status)
    state, now = _begin(state, now)
    old = _visible(state, rid, now)
    check_transition(rid, old.status, target)
    new = replace(old, status=target, updated_at=now,
                  terminated_at=now if target.terminal else None)
    runs = _put(state.runs, new)
    if target.terminal:
        runs, _ = enforce_cap(runs, state.policy)
    return replace(state, runs=runs, clock=now), new


def heartbeat(state: ModelState, run_id: object, now: float) -> tuple[ModelState, Run]:
    """Renew an active run's lease (T2: not on a terminal run)."""
    rid = check_run_id(run_id)
    state, now = _begin(state, now)
    old = _active(state, rid, now, "heartbeat")
    new = replace(old, updated_at=now)
    return replace(state, runs=_put(state.runs, new), clock=now), new


def append_event(state: ModelState, run_id: object, payload: object, now: float
                 ) -> tuple[ModelState, int]:
    """Buffer an event on an active run (T2) and return its 1-based sequence number. The
    ring buffer keeps the newest `max_events_per_run` and counts what it drops."""
    rid = check_run_id(run_id)
    text = check_payload(rid, payload)
    state, now = _begin(state, now)
    old = _active(state, rid, now, "append_event")
    new = replace(buffer_event(old, text, state.policy), updated_at=now)
    return (replace(state, runs=_put(state.runs, new), clock=now),
            old.dropped_events + len(old.events) + 1)


# --- reads (they never change the state) -----------------------------------------------

def get(state: ModelState, run_id: object, now: float) -> Run:
    rid = check_run_id(run_id)
    _open(state)
    return _visible(state, rid, _now(state, now))


def list_runs(state: ModelState, limit: object, status: object = None,
              cursor: object = None, now: float = 0.0) -> Page:
    """Visible runs, newest started first (`seq` descending: a total order), at most
    `limit`, optionally of one status, after `cursor`. A cursor is a position, so pages
    neither repeat nor skip a run that stays visible, whatever starts meanwhile."""
    count = check_limit(limit)
    wanted = None if status is None else as_status("*", status)
    below = parse_cursor(cursor)
    _open(state)
    now = _now(state, now)
    matching = [r for r in reversed(state.runs)
                if (wanted is None or r.status is wanted)
                and (below is None or r.seq < below)
                and not expired(r, state.policy, now)]
    page = tuple(matching[:count])
    more = len(matching) > count
    return Page(runs=page, next_cursor=str(page[-1].seq) if more else None)


def size(state: ModelState) -> int:
    """`len(store)`: runs retained, including expired ones no sweep has dropped yet."""
    return len(state.runs)


# --- the cleanup worker and the store's life ---------------------------------------------

def start_worker(state: ModelState, interval: object) -> tuple[ModelState, bool]:
    """True iff this call started the worker; False if one was already running (I11)."""
    check_interval(interval)
    _open(state)
    if state.worker:
        return state, False
    return replace(state, worker=True), True


def stop_worker(state: ModelState) -> tuple[ModelState, bool]:
    """True iff a worker was running. Safe to call twice, and after close."""
    return replace(state, worker=False), state.worker


def restart(state: ModelState) -> ModelState:
    """The process restarts: every run is kept (a store must be durable), threads are
    gone, so no worker runs until one is started again."""
    return replace(state, worker=False, closed=False)


def close(state: ModelState) -> ModelState:
    """Stop the worker; later calls raise StoreClosed. Closing twice is a no-op."""
    return replace(state, worker=False, closed=True)


# --- argument checks, shared with the stores ---------------------------------------------

def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not 1 <= len(run_id) <= MAX_RUN_ID_LENGTH:
        shown = run_id if not isinstance(run_id, str) else run_id[:40]
        raise InvalidArgument(shown, "n/a", f"R1: a run id is a str of 1 to "
                              f"{MAX_RUN_ID_LENGTH} characters, got {type(run_id).__name__}"
                              f" of length {len(run_id) if isinstance(run_id, str) else '-'}")
    return run_id


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgument("*", "n/a", f"L2: limit must be an int >= 1, got {limit!r}")
    return limit


def check_payload(run_id: str, payload: object) -> str:
    if not isinstance(payload, str):
        raise InvalidArgument(run_id, "n/a", f"E1: payload must be str, got "
                              f"{type(payload).__name__}")
    return payload


def buffer_event(run: Run, payload: str, policy: Policy) -> Run:
    """`run` with `payload` appended to its ring buffer: the newest
    `max_events_per_run` are kept, the rest counted in `dropped_events`.

    pre: policy.max_events_per_run is None or len(run.events) <= policy.max_events_per_run
    post: policy.max_events_per_run is None or len(__return__.events) <= policy.max_events_per_run
    post: __return__.dropped_events + len(__return__.events) == run.dropped_events + len(run.events) + 1
    post: policy.max_events_per_run == 0 or __return__.events[-1] == payload
    """
    events, dropped = (*run.events, payload), run.dropped_events
    cap = policy.max_events_per_run
    if cap is not None and len(events) > cap:
        dropped += len(events) - cap
        events = events[len(events) - cap:]
    return replace(run, events=events, dropped_events=dropped)


def check_interval(interval: object) -> float:
    if (isinstance(interval, bool) or not isinstance(interval, int | float)
            or not math.isfinite(interval) or interval <= 0):
        raise InvalidArgument("*", "n/a",
                              f"W1: worker interval must be a finite number > 0, got {interval!r}")
    return float(interval)


def parse_cursor(cursor: object) -> int | None:
    """The model's cursor is the `seq` of the last run on the page, as decimal text."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not cursor.isdigit():
        raise InvalidArgument("*", "n/a", f"L3: cursor must come from a previous page, "
                              f"got {cursor!r}")
    return int(cursor)


# --- internals --------------------------------------------------------------------------

def _open(state: ModelState) -> None:
    if state.closed:
        raise StoreClosed("*", "closed", "L1: the store is closed")


def _now(state: ModelState, now: float) -> float:
    return now if now > state.clock else state.clock


def _begin(state: ModelState, now: float) -> tuple[ModelState, float]:
    """What every mutation does first: refuse if closed, fix `now`, sweep if lazy."""
    _open(state)
    now = _now(state, now)
    if state.policy.lazy:
        runs, _ = _sweep(state.runs, state.policy, now)
        state = replace(state, runs=runs)
    return state, now


def _find(runs: tuple[Run, ...], run_id: str) -> Run | None:
    for run in runs:
        if run.run_id == run_id:
            return run
    return None


def _visible(state: ModelState, run_id: str, now: float) -> Run:
    run = _find(state.runs, run_id)
    if run is None:
        raise UnknownRun(run_id, "absent", "V1: no run with this id is retained")
    if expired(run, state.policy, now):
        raise UnknownRun(run_id, run.status, "V2: the run is past its TTL")
    return run


def _active(state: ModelState, run_id: str, now: float, op: str) -> Run:
    run = _visible(state, run_id, now)
    if not run.active:
        raise NotActive(run_id, run.status, f"T2: {op} needs an active run")
    return run


def _put(runs: tuple[Run, ...], new: Run) -> tuple[Run, ...]:
    return tuple(new if r.run_id == new.run_id else r for r in runs)
