"""The executable specification: a run store as pure functions of (state, arguments, now).

Rules of this module:
- Every operation takes the state and returns `(new_state, result)`, or raises a
  RunboundError. States are immutable, so a refused call cannot have changed anything
  (invariant I10) -- including the lazy sweep it may have started: that sweep belongs to
  the call and goes with it.
- No threads, no I/O, no clock. Time is the `now` argument (a clock reading). The state
  remembers the latest reading any call made -- reads and refused calls too -- and never
  goes back from it (`at`, rule C1), so a clock that steps backwards cannot un-expire a
  run or decrease `updated_at`; a NaN or infinite reading is refused.
- `apply` is the one way a call is made: the order of its checks is the precedence of
  errors every store follows.
- Retention lives in three functions used everywhere: `expired` (the one TTL test),
  `stale` (the one lease test) and `eviction_key` (the one eviction order).
- Written for CrossHair as well as for readers: plain tuples, no dict iteration order, no
  hidden state.

Stores implement the same operations with locks, indexes and storage; the checkers in
this package hold them to these functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, cast

from runbound.model import rules
from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    InvalidArgument,
    NotActive,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status, as_status, check_transition
from runbound.model.policy import MAX_INT, Policy  # the largest limit, cursor and cap (int64)
from runbound.model.records import MAX_RUN_ID_LENGTH, Page, Run, SweepResult


@dataclass(frozen=True, slots=True)
class ModelState:
    policy: Policy
    #: retained runs in start order (ascending `seq`), visible or not.
    runs: tuple[Run, ...] = ()
    next_seq: int = 1
    #: the high-water mark: the latest clock reading any call made (C1); effective time
    #: never goes below it.
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
    excess = sum(1 for r in runs if r.terminal) - policy.max_terminal
    if excess <= 0:  # the common case, answered without sorting
        return runs, ()
    terminal = sorted((r for r in runs if r.terminal), key=eviction_key)
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
    if not any(stale(r, policy, now) or expired(r, policy, now) for r in runs):
        # nothing is due: the same tuple back, so a caller can tell nothing changed (`is`)
        # and keep its state rather than copy it
        after, evicted = enforce_cap(runs, policy)
        return after, (SweepResult(evicted=evicted) if evicted else _NOTHING)
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


_NOTHING = SweepResult()


# --- one call, as a store makes it ------------------------------------------------------
#
# Every call checks, in this order, and the first rule broken is the error:
#   1. L1: the store is open (close, stop_cleanup_worker and cleanup_workers_alive are
#      the only calls a closed store answers);
#   2. its arguments, left to right (R1 run id, R2 status, R3 payload, L2 limit,
#      L3 cursor, W1 interval): InvalidArgument;
#   3. C1, for the calls that read the clock (CLOCKED): one reading; NaN or an infinity
#      is ClockError. Otherwise the effective time is max(high-water mark, reading), and
#      the mark is raised to it -- by this call whatever happens next: a read, and a call
#      refused in step 4 or 5, raise it too. So an expired run is never seen again and
#      `updated_at` never decreases, however the clock misbehaves;
#   4. the lazy sweep (mutations, in lazy and both modes);
#   5. the operation's own rules (A1, A2, V1, V2, T1, T2). A refusal here undoes step 4
#      (I10: a refused call changes no run); the raised mark stays.

#: the calls that read the clock (step 3)
CLOCKED = frozenset({"start", "transition", "heartbeat", "append_event", "get",
                     "list_runs", "prune"})
#: the calls a closed store still answers (step 1)
AFTER_CLOSE = frozenset({"close", "stop_cleanup_worker", "cleanup_workers_alive"})


def apply(state: ModelState, op: str, args: tuple[object, ...], now: float
          ) -> tuple[ModelState, object]:
    """Make the call `op(*args)` at clock reading `now`. Returns the new state and the
    result; a refusal is returned as its error, with the state it leaves (which differs
    from `state` at most in the clock's high-water mark)."""
    if op not in _BODIES:
        raise KeyError(f"no operation {op!r}")
    try:
        if op not in AFTER_CLOSE:
            _open(state)
        checked = _ARGUMENTS[op](args)
        if op in CLOCKED:
            who = checked[0] if checked and isinstance(checked[0], str) else "*"
            state, now = at(state, now, who)
    except RunboundError as error:
        return state, error
    try:
        return _BODIES[op](state, now, *checked)
    except RunboundError as error:
        return state, error


def at(state: ModelState, now: float, run_id: str = "*") -> tuple[ModelState, float]:
    """Step 3 (C1): the state with its high-water mark raised to the reading `now`, and
    the effective time; ClockError for a reading that is NaN or infinite."""
    if not isinstance(now, int | float) or not math.isfinite(now):
        raise ClockError(run_id, "n/a", rules.text("C1", reading=repr(now)))
    if now <= state.clock:
        return state, state.clock
    return _copy(state, state.runs, state.next_seq, now), now


def call(state: ModelState, op: str, *args: object, now: float
         ) -> tuple[ModelState, object]:
    """`apply`, raising a refusal instead of returning it (the mark it raised is lost
    with it: use `apply` where that matters)."""
    state, result = apply(state, op, args, now)
    if isinstance(result, RunboundError):
        raise result
    return state, result


# --- the operations' own rules (steps 4 and 5), on checked arguments ----------------------

def _start(state: ModelState, now: float, rid: str) -> tuple[ModelState, Run]:
    """Start a run PENDING. An active run with the id: RunAlreadyActive (A1). A terminal
    one, visible or not, is replaced. `max_active` active runs: AdmissionRefused (A2)."""
    state = _lazy(state, now)
    old = find(state.runs, rid)
    if old is not None and old.active:
        raise RunAlreadyActive(rid, old.status, rules.text("A1"))
    runs = tuple(r for r in state.runs if r.run_id != rid)
    policy = state.policy
    if policy.max_active is not None:
        active = sum(1 for r in runs if r.active)
        if active >= policy.max_active:
            raise AdmissionRefused(
                rid, "absent" if old is None else old.status,
                rules.text("A2", active=active, max_active=policy.max_active))
    run = Run(run_id=rid, status=Status.PENDING, created_at=now, updated_at=now,
              seq=state.next_seq)
    return _copy(state, (*runs, run), state.next_seq + 1, state.clock), run


def _transition(state: ModelState, now: float, rid: str, target: Status
                ) -> tuple[ModelState, Run]:
    """Move a visible run along the table (T1). Into a terminal status: stamp
    `terminated_at` and enforce the cap at once, whatever the sweep mode."""
    state = _lazy(state, now)
    old = _visible(state, rid, now)
    check_transition(rid, old.status, target)
    new = replace(old, status=target, updated_at=now,
                  terminated_at=now if target.terminal else None)
    runs = _put(state.runs, new)
    if target.terminal:
        runs, _ = enforce_cap(runs, state.policy)
    return _with_runs(state, runs), new


def _heartbeat(state: ModelState, now: float, rid: str) -> tuple[ModelState, Run]:
    """Renew an active run's lease (T2: not on a terminal run)."""
    state = _lazy(state, now)
    new = replace(_active(state, rid, now, "heartbeat"), updated_at=now)
    return _with_runs(state, _put(state.runs, new)), new


def _append_event(state: ModelState, now: float, rid: str, text: str
                  ) -> tuple[ModelState, int]:
    """Buffer an event on an active run (T2) and return its 1-based sequence number. The
    ring buffer keeps the newest `max_events_per_run` and counts what it drops."""
    state = _lazy(state, now)
    old = _active(state, rid, now, "append_event")
    new = replace(buffer_event(old, text, state.policy), updated_at=now)
    return (_with_runs(state, _put(state.runs, new)),
            old.dropped_events + len(old.events) + 1)


def _get(state: ModelState, now: float, rid: str) -> tuple[ModelState, Run]:
    """A read: never sweeps, never renews the lease."""
    return state, _visible(state, rid, now)


def _list_runs(state: ModelState, now: float, count: int, wanted: Status | None,
               below: int | None) -> tuple[ModelState, Page]:
    """Visible runs, newest started first (`seq` descending: a total order), at most
    `count`, optionally of one status, below the cursor's position. `next_cursor` is None
    iff no further matching visible run exists now. A cursor is a position, so a walk
    neither repeats a run nor skips one that stays visible, whatever starts meanwhile."""
    matching = [r for r in reversed(state.runs)
                if (wanted is None or r.status is wanted)
                and (below is None or r.seq < below)
                and not expired(r, state.policy, now)]
    page = tuple(matching[:count])
    more = len(matching) > count
    return state, Page(runs=page, next_cursor=str(page[-1].seq) if more else None)


def first_page(runs: Iterable[Run], count: int, policy: Policy, now: float) -> Page:
    """The first `count` runs of `runs` (already newest first, matching) that are not
    expired, with a cursor iff one more exists: the walk each store makes over its own
    index, stopping one run past the page."""
    found: list[Run] = []
    for run in runs:
        if expired(run, policy, now):
            continue
        if len(found) == count:  # one more exists: there is a next page
            return Page(tuple(found), str(found[-1].seq))
        found.append(run)
    return Page(tuple(found), None)


def _prune(state: ModelState, now: float) -> tuple[ModelState, SweepResult]:
    """One sweep whatever the sweep mode; what the cleanup worker runs."""
    runs, result = _sweep(state.runs, state.policy, now)
    return (state if runs is state.runs else _with_runs(state, runs)), result


def _len(state: ModelState, now: float) -> tuple[ModelState, int]:
    """`len(store)`: runs retained, including expired ones no sweep has dropped yet."""
    return state, len(state.runs)


def _start_worker(state: ModelState, now: float, interval: float
                  ) -> tuple[ModelState, bool]:
    """True iff this call started the worker; False if one was already running (I11)."""
    if state.worker:
        return state, False
    return replace(state, worker=True), True


def _stop_worker(state: ModelState, now: float) -> tuple[ModelState, bool]:
    """True iff a worker was running. Safe to call twice, and after close."""
    return replace(state, worker=False), state.worker


def _close(state: ModelState, now: float) -> tuple[ModelState, None]:
    """Stop the worker; later calls raise StoreClosed. Closing twice is a no-op."""
    return replace(state, worker=False, closed=True), None


def _snapshot(state: ModelState, now: float) -> tuple[ModelState, tuple[Run, ...]]:
    """Every retained run, visible or not, in start order: for checkers."""
    return state, state.runs


def _workers(state: ModelState, now: float) -> tuple[ModelState, int]:
    return state, int(state.worker)


def _none(args: tuple[object, ...]) -> tuple[object, ...]:
    return ()


_ARGUMENTS: dict[str, Callable[[tuple[object, ...]], tuple[object, ...]]] = {
    "start": lambda a: (check_run_id(a[0]),),
    "transition": lambda a: (check_run_id(a[0]), as_status(a[0], a[1])),
    "heartbeat": lambda a: (check_run_id(a[0]),),
    "append_event": lambda a: (check_run_id(a[0]), check_payload(a[0], a[1])),
    "get": lambda a: (check_run_id(a[0]),),
    "list_runs": lambda a: (check_limit(a[0]),
                            None if _at(a, 1) is None else as_status("*", a[1]),
                            parse_cursor(_at(a, 2))),
    "prune": _none,
    "len": _none,
    "snapshot": _none,
    "start_cleanup_worker": lambda a: (check_interval(a[0]),),
    "stop_cleanup_worker": _none,
    "cleanup_workers_alive": _none,
    "close": _none,
}
_BODIES: dict[str, Callable[..., tuple[ModelState, Any]]] = {
    "start": _start, "transition": _transition, "heartbeat": _heartbeat,
    "append_event": _append_event, "get": _get, "list_runs": _list_runs,
    "prune": _prune, "len": _len, "snapshot": _snapshot,
    "start_cleanup_worker": _start_worker,
    "stop_cleanup_worker": _stop_worker, "cleanup_workers_alive": _workers,
    "close": _close,
}
#: every call of the store interface the model answers
OPERATIONS = frozenset(_BODIES)


def _at(args: tuple[object, ...], i: int) -> object:
    return args[i] if len(args) > i else None


# --- the same, one function per operation (raising on a refusal) ------------------------

def start(state: ModelState, run_id: object, now: float) -> tuple[ModelState, Run]:
    return cast(tuple[ModelState, Run], call(state, "start", run_id, now=now))


def transition(state: ModelState, run_id: object, status: object, now: float
               ) -> tuple[ModelState, Run]:
    return cast(tuple[ModelState, Run], call(state, "transition", run_id, status, now=now))


def heartbeat(state: ModelState, run_id: object, now: float) -> tuple[ModelState, Run]:
    return cast(tuple[ModelState, Run], call(state, "heartbeat", run_id, now=now))


def append_event(state: ModelState, run_id: object, payload: object, now: float
                 ) -> tuple[ModelState, int]:
    return cast(tuple[ModelState, int], call(state, "append_event", run_id, payload,
                                             now=now))


def get(state: ModelState, run_id: object, now: float) -> Run:
    return cast(Run, call(state, "get", run_id, now=now)[1])


def list_runs(state: ModelState, limit: object, status: object = None,
              cursor: object = None, now: float = 0.0) -> Page:
    return cast(Page, call(state, "list_runs", limit, status, cursor, now=now)[1])


def sweep(state: ModelState, now: float) -> tuple[ModelState, SweepResult]:
    """`prune()`: one sweep whatever the sweep mode; what the cleanup worker runs."""
    return cast(tuple[ModelState, SweepResult], call(state, "prune", now=now))


def size(state: ModelState) -> int:
    """`len(store)`: runs retained, including expired ones no sweep has dropped yet."""
    return cast(int, call(state, "len", now=0.0)[1])


def start_worker(state: ModelState, interval: object) -> tuple[ModelState, bool]:
    return cast(tuple[ModelState, bool], call(state, "start_cleanup_worker", interval,
                                              now=0.0))


def stop_worker(state: ModelState) -> tuple[ModelState, bool]:
    return cast(tuple[ModelState, bool], call(state, "stop_cleanup_worker", now=0.0))


def close(state: ModelState) -> ModelState:
    return call(state, "close", now=0.0)[0]


def restart(state: ModelState) -> ModelState:
    """The process restarts: every run is kept (a store must be durable), and so is the
    clock's high-water mark; threads are gone, so no worker runs until one is started
    again."""
    return replace(state, worker=False, closed=False)


# --- argument checks, shared with the stores ---------------------------------------------

#: the longest worker interval, in seconds (about 31 years)
MAX_INTERVAL = 1e9
#: the longest cursor text the model issues (`MAX_INT` in decimal)
_CURSOR_DIGITS = len(str(MAX_INT))


#: a surrogate code point: one regex search runs in C, where a loop over the characters
#: cost more than the rest of a store's call
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    # a lone surrogate is not text: it has no UTF-8 form, so no store could keep it
    return _SURROGATE.search(text) is not None


def shown(value: object) -> str:
    """`value` for a message, short, whatever it is (an int past Python's int-string
    limit has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, str | bytes) and len(value) > 40:
        return f"{value[:40]!r}... ({len(value)} long)"
    return repr(value)


def check_run_id(run_id: object) -> str:
    """R1: a str of 1 to MAX_RUN_ID_LENGTH code points, none a surrogate. Anything else a
    str may hold -- quotes, NUL, newlines, braces, "ERR" -- is a valid id, kept exactly."""
    if (not isinstance(run_id, str) or not 1 <= len(run_id) <= MAX_RUN_ID_LENGTH
            or _has_surrogate(run_id)):
        named = run_id if isinstance(run_id, str) and len(run_id) <= 40 else shown(run_id)
        raise InvalidArgument(named, "n/a", f"R1: a run id is a str of 1 to "
                              f"{MAX_RUN_ID_LENGTH} characters with no surrogate, got "
                              f"{type(run_id).__name__} {shown(run_id)}")
    return run_id


def check_limit(limit: object) -> int:
    """L2: an int (not a bool) from 1 to MAX_INT."""
    if (isinstance(limit, bool) or not isinstance(limit, int)
            or not 1 <= limit <= MAX_INT):
        raise InvalidArgument("*", "n/a", f"L2: limit must be an int from 1 to 2**63-1, "
                                          f"got {shown(limit)}")
    return limit


def check_payload(run_id: object, payload: object) -> str:
    """R3: a str with no surrogate, of any length."""
    if not isinstance(payload, str) or _has_surrogate(payload):
        raise InvalidArgument(run_id, "n/a", f"R3: a payload is a str with no surrogate, "
                              f"got {type(payload).__name__} {shown(payload)}")
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
    """W1: an int or float (not a bool), finite, 0 < interval <= MAX_INTERVAL."""
    ok = isinstance(interval, int | float) and not isinstance(interval, bool)
    if ok and isinstance(interval, int):
        ok = 0 < interval <= MAX_INTERVAL
    elif ok:
        ok = math.isfinite(cast(float, interval)) and 0 < cast(float, interval) <= MAX_INTERVAL
    if not ok:
        raise InvalidArgument("*", "n/a", f"W1: worker interval must be a number with "
                              f"0 < interval <= {MAX_INTERVAL:g}, got {shown(interval)}")
    return float(cast(float, interval))


def parse_cursor(cursor: object) -> int | None:
    """L3: None, or a cursor this store issued. The model's is the `seq` of the last run
    on the page in ASCII decimal (1 to 19 digits, at most MAX_INT); anything else -- not
    a str, empty, other digits ("²", "１"), a sign, spaces, too long -- is refused."""
    if cursor is None:
        return None
    if (not isinstance(cursor, str) or not 1 <= len(cursor) <= _CURSOR_DIGITS
            or not cursor.isascii() or not cursor.isdigit() or int(cursor) > MAX_INT):
        raise InvalidArgument("*", "n/a", f"L3: a cursor must come from a previous page of "
                              f"this store, got {shown(cursor)}")
    return int(cursor)


# --- internals --------------------------------------------------------------------------

def _open(state: ModelState) -> None:
    if state.closed:
        raise StoreClosed("*", "closed", rules.text("L1"))


def _lazy(state: ModelState, now: float) -> ModelState:
    """Step 4: what every mutation does first in lazy and both modes."""
    if state.policy.lazy:
        runs, _ = _sweep(state.runs, state.policy, now)
        if runs is not state.runs:  # a sweep that finds nothing costs no copy
            state = _with_runs(state, runs)
    return state


def _copy(state: ModelState, runs: tuple[Run, ...], next_seq: int, clock: float
          ) -> ModelState:
    """`replace(state, runs=..., next_seq=..., clock=...)` for the calls every checker
    makes on every step, without `replace`'s field-by-field introspection (a third of a
    call's time, measured)."""
    return ModelState(state.policy, runs, next_seq, clock, state.worker, state.closed)


def _with_runs(state: ModelState, runs: tuple[Run, ...]) -> ModelState:
    return _copy(state, runs, state.next_seq, state.clock)


def find(runs: tuple[Run, ...], run_id: str) -> Run | None:
    for run in runs:
        if run.run_id == run_id:
            return run
    return None


def _visible(state: ModelState, run_id: str, now: float) -> Run:
    run = find(state.runs, run_id)
    if run is None:
        raise UnknownRun(run_id, "absent", rules.text("V1"))
    if expired(run, state.policy, now):
        raise UnknownRun(run_id, run.status, rules.text("V2"))
    return run


def _active(state: ModelState, run_id: str, now: float, op: str) -> Run:
    run = _visible(state, run_id, now)
    if not run.active:
        raise NotActive(run_id, run.status, rules.text("T2", op=op))
    return run


def _put(runs: tuple[Run, ...], new: Run) -> tuple[Run, ...]:
    return tuple(new if r.run_id == new.run_id else r for r in runs)
