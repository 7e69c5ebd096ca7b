"""The numbered invariants and eventual properties: one registry, and the functions that
check them.

`INVARIANTS` is the one list of properties, Stateright's way: each with its kind
(`always`: in every state and step; `eventually`: bounded, within a deadline, since time is
explicit), the checkers that decide it (named here by `Checker`, so the spec says who
decides what without importing one; `runbound.model.check.verify.DECIDERS` maps each
name to its function), the capability a store must have for it to apply, and the events
a sampled run must have seen for its pass to decide anything. Every checker, `verify`,
`conform`, the pytest plugin and the tests read this table, never a copy of it.

Every checker (the stateful check, the explorer, the verify table, the unit tests) calls
the functions below and nothing else, so an invariant means the same thing everywhere.
They judge an `Observation`: what a store (or the model) retains, as a tuple of runs, plus
how many cleanup workers are alive. Invariants over one observation are in
`state_violations`; those over a step (before, call, after) in `step_violations`.

`specs/invariants.md` states each in prose, with its kind and checkers, and names the test
that checks it; a test fails if an id here is missing there or the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from runbound.model.lifecycle import TERMINAL, TRANSITIONS
from runbound.model.policy import Policy
from runbound.model.records import Run
from runbound.model.spec import ModelState, expired, shown, stale


class Kind(StrEnum):
    #: holds in every state and after every step
    ALWAYS = "always"
    #: holds within a deadline (bounded response): with the worker running, what is due
    #: is done by one interval later
    EVENTUALLY = "eventually"


class Checker(StrEnum):
    """The checkers of `runbound.model.check` that decide properties, by name."""

    #: the stateful check: the store and the model in lockstep (`check/stateful.py`)
    STATEFUL = "the stateful check"
    #: threads racing `start_cleanup_worker` from a barrier (`check/probes.py`)
    START_RACE = "the start-race probe"
    #: an hour of sweeps that all fail, the log counted (`check/probes.py`)
    FAILING_SWEEPS = "the failing-sweeps probe"
    #: threads calling at once, each history searched for a linearization
    #: (`check/linearizability.py`)
    LINEARIZABILITY = "the linearizability check"


#: a store's capability (a field of `runbound.model.protocol.Capabilities`) -> why the
#: properties that need it are skipped on a store that declares it lacks it
CAPABILITY_MISSING: dict[str, str] = {
    "worker": "declares no cleanup worker",
    "events": "declares no events",
    "durable": "does not declare itself durable",
    "thread_safe": "does not declare itself thread-safe",
}


@dataclass(frozen=True, slots=True)
class Invariant:
    id: str
    title: str
    #: always, or eventually (within a deadline)
    kind: Kind = Kind.ALWAYS
    #: the checkers that decide it, in order: it passes when every one passes, and its
    #: verdict is the first that does not
    checkers: tuple[Checker, ...] = (Checker.STATEFUL,)
    #: the capability a store must have for it to apply (None: every store)
    needs: str | None = None
    #: the events (`runbound.model.check.coverage.EVENTS`) without which a sampled run's
    #: pass decides nothing: such a pass is "unknown" (vacuous)
    witnesses: tuple[str, ...] = ()

    @property
    def how_decided(self) -> str:
        """Its kind, checkers and capability, as `specs/invariants.md` states them."""
        needs = "" if self.needs is None else f"; applies to a store with `{self.needs}`"
        return f"{self.kind}; decided by {' and '.join(self.checkers)}{needs}"


INVARIANTS: dict[str, Invariant] = {i.id: i for i in (
    Invariant("I1", "terminal runs retained <= max_terminal", witnesses=("cap-eviction",)),
    Invariant("I2", "runs retained <= max_active + max_terminal",
              witnesses=("cap-eviction", "admission-refused")),
    Invariant("I3", "active runs <= max_active (admission control)",
              witnesses=("admission-refused",)),
    Invariant("I4", "an active run is never evicted", witnesses=("eviction-beside-active",)),
    Invariant("I5", "no terminal run past its TTL is visible", witnesses=("ttl-expiry",)),
    Invariant("I6", "terminated_at is set iff the status is terminal",
              witnesses=("terminated",)),
    Invariant("I7", "terminated_at is stamped once and never changed",
              witnesses=("terminated",)),
    Invariant("I8", "updated_at never decreases", witnesses=("updated",)),
    Invariant("I9", "status changes follow the transition table"),
    Invariant("I10", "a refused call changes nothing", witnesses=("refusal",)),
    # the stateful check counts the store's threads after every call; a race of starts
    # it cannot make with one caller is the probe's
    Invariant("I11", "at most one cleanup worker is alive",
              checkers=(Checker.STATEFUL, Checker.START_RACE), needs="worker"),
    Invariant("I12", "events buffered per run <= max_events_per_run", needs="events",
              witnesses=("events-dropped",)),
    Invariant("I13", "every result and error equals the model's"),
    Invariant("I14", "the runs retained equal the model's"),
    Invariant("I15", "after a sweep no active run is past its lease",
              witnesses=("lease-reap",)),
    Invariant("I16", "the cleanup worker stops when asked (stop or close)", needs="worker"),
    # the stateful check restarts the store among its steps
    Invariant("I17", "a restart keeps every run", needs="durable"),
    Invariant("I18", "a sweep failing for an hour logs a bounded number of lines",
              checkers=(Checker.FAILING_SWEEPS,), needs="worker"),
    Invariant("I19", "concurrent calls are linearizable against the model",
              checkers=(Checker.LINEARIZABILITY,), needs="thread_safe"),
    # eventual properties, bounded: with time explicit, "eventually" has a deadline
    Invariant("E1", "with the worker running, a terminal run is gone within its TTL plus "
                    "one interval", Kind.EVENTUALLY, needs="worker",
              witnesses=("worker-expiry",)),
    Invariant("E2", "with the worker running, a stale active run is reaped within one "
                    "interval", Kind.EVENTUALLY, needs="worker", witnesses=("worker-reap",)),
)}


def decided_by(checker: Checker) -> list[str]:
    """The ids of the properties `checker` decides (alone or with others)."""
    return [i for i, p in INVARIANTS.items() if checker in p.checkers]


class InvariantViolation(AssertionError):
    """Raised by a checker when a store breaks an invariant. One subclass per invariant,
    so Hypothesis tells the failures apart and reports each with its own example."""

    invariant: str = "?"

    def __init__(self, message: str, trace: tuple[str, ...] = (),
                 program: tuple[dict[str, object], ...] = (), differed: str = "",
                 call: tuple[str, str, str] | None = None) -> None:
        self.trace = trace        # the calls, as text
        self.program = program    # the same calls as data, for `runbound.model.check.replay`
        self.differed = differed  # what was seen, one line
        #: when seen after a call: the call, the model's result and the store's, as shown
        self.call = call
        super().__init__(message)


VIOLATIONS: dict[str, type[InvariantViolation]] = {
    iid: type(f"{iid}Violation", (InvariantViolation,), {"invariant": iid})
    for iid in INVARIANTS
}


@dataclass(frozen=True, slots=True)
class Observation:
    runs: tuple[Run, ...]
    workers: int = 0

    def by_id(self) -> dict[str, Run]:
        return {r.run_id: r for r in self.runs}

    @classmethod
    def of(cls, state: ModelState) -> Observation:
        return cls(state.runs, int(state.worker))


Violation = tuple[str, str]  # (invariant id, what was seen)


def state_violations(obs: Observation, policy: Policy) -> list[Violation]:
    """I1, I2, I3, I6, I11, I12: what must hold of any single observation."""
    out: list[Violation] = []
    terminal = [r for r in obs.runs if r.terminal]
    active = [r for r in obs.runs if r.active]
    if policy.max_terminal is not None and len(terminal) > policy.max_terminal:
        out.append(("I1", f"{len(terminal)} terminal runs retained, "
                          f"max_terminal is {policy.max_terminal}"))
    bound = policy.size_bound
    if bound is not None and len(obs.runs) > bound:
        out.append(("I2", f"{len(obs.runs)} runs retained, bound is {bound} "
                          f"({len(active)} active, {len(terminal)} terminal)"))
    if policy.max_active is not None and len(active) > policy.max_active:
        out.append(("I3", f"{len(active)} active runs, max_active is {policy.max_active}"))
    for r in obs.runs:
        if (r.terminated_at is not None) != r.terminal:
            out.append(("I6", f"run {r.run_id!r} is {r.status} with "
                              f"terminated_at={r.terminated_at}"))
    if obs.workers > 1:
        out.append(("I11", f"{obs.workers} cleanup workers alive"))
    cap = policy.max_events_per_run
    for r in obs.runs:
        if cap is not None and len(r.events) > cap:
            out.append(("I12", f"run {r.run_id!r} buffers {len(r.events)} events, "
                               f"max_events_per_run is {cap}"))
    return out


def step_violations(before: Observation, after: Observation, *, op: str,
                    args: tuple[object, ...], refused: bool,
                    policy: Policy | None = None, now: float = 0.0) -> list[Violation]:
    """I4, I7, I8, I9, I10: what must hold of a step `op(*args)`, judged from the
    store's own observations. A successful `start(run_id)` replaces a terminal run, so
    that run is a new one and its history starts over. An active run may leave the store
    only if this call moved it to a terminal status (the cap may then evict it), or if
    it was past its lease (any sweep may reap it, and the cap evict it)."""
    out: list[Violation] = []
    run_id = args[0] if args else None
    call = f"{op}({'' if run_id is None else shown(run_id)})"
    old, new = before.by_id(), after.by_id()
    if refused and (old != new or before.workers != after.workers):
        changed = sorted((k for k in old.keys() | new.keys() if old.get(k) != new.get(k)),
                         key=repr)
        out.append(("I10", f"refused {call} changed runs {changed} "
                           f"(workers {before.workers} -> {after.workers})"))
    finished = (op == "transition" and not refused and len(args) > 1
                and str(args[1]) in {s.value for s in TERMINAL})
    for rid, was in old.items():
        cur = new.get(rid)
        if cur is None:
            ended_here = finished and rid == run_id
            reapable = policy is not None and stale(was, policy, now)
            if was.active and not ended_here and not reapable:
                out.append(("I4", f"active run {rid!r} ({was.status}) was evicted by "
                                  f"{call}"))
            continue
        if op == "start" and rid == run_id and not refused:
            continue  # a new run under an old id
        if was.terminated_at is not None and cur.terminated_at != was.terminated_at:
            out.append(("I7", f"run {rid!r}: terminated_at {was.terminated_at} -> "
                              f"{cur.terminated_at} by {op}"))
        if cur.updated_at < was.updated_at:
            out.append(("I8", f"run {rid!r}: updated_at {was.updated_at} -> "
                              f"{cur.updated_at} by {op}"))
        if cur.status is not was.status and cur.status not in TRANSITIONS[was.status]:
            out.append(("I9", f"run {rid!r}: {was.status} -> {cur.status} by {op}"))
    return out


def lease_violations(runs: Iterable[Run], policy: Policy, now: float) -> list[Violation]:
    """I15, over what a store holds right after it swept."""
    return [("I15", f"active run {r.run_id!r} not updated for {now - r.updated_at:g}s "
                    f"survived a sweep; stale_after is {policy.stale_after}")
            for r in runs if stale(r, policy, now)]


def overdue_violations(runs: Iterable[Run], policy: Policy, since: float, interval: float,
                       now: float) -> list[Violation]:
    """E1 and E2, over what a store retains at effective time `now`, its worker running
    every `interval` since `since`: what that worker should have removed or reaped."""
    out: list[Violation] = []
    for run in runs:
        if run.terminated_at is not None and policy.ttl is not None:
            deadline = max(run.terminated_at + policy.ttl, since) + interval
            if now > deadline:
                out.append(("E1", f"run {run.run_id!r} expired at "
                                  f"{run.terminated_at + policy.ttl:g}, still retained at "
                                  f"{now:g} (worker every {interval:g}s)"))
        elif run.active and policy.stale_after is not None:
            deadline = max(run.updated_at + policy.stale_after, since) + interval
            if now > deadline:
                out.append(("E2", f"run {run.run_id!r} stale since "
                                  f"{run.updated_at + policy.stale_after:g}, still "
                                  f"{run.status} at {now:g} (worker every {interval:g}s)"))
    return out


def restart_violations(before: Observation, after: Observation) -> list[Violation]:
    """I17: what a store held before a restart, it holds after, field for field."""
    old, new = before.by_id(), after.by_id()
    lost = sorted((k for k in old if old[k] != new.get(k)), key=repr)
    if not lost:
        return []
    return [("I17", f"restart lost or changed {len(lost)} of {len(old)} runs: {lost}")]


def visibility_violations(runs: Iterable[Run], policy: Policy, now: float
                          ) -> list[Violation]:
    """I5, over the runs a read returned."""
    return [("I5", f"run {r.run_id!r} returned {now - (r.terminated_at or 0):g}s after it "
                   f"terminated, ttl is {policy.ttl}")
            for r in runs if expired(r, policy, now)]


def retained_violations(store: Mapping[str, Run], model: Mapping[str, Run]
                        ) -> list[Violation]:
    """I14: the store keeps exactly the runs the model keeps, field for field."""
    if store == model:
        return []
    # a store that accepts bad ids may hold keys of any type: sort by repr
    extra = sorted(store.keys() - model.keys(), key=repr)
    missing = sorted(model.keys() - store.keys(), key=repr)
    differ = sorted((k for k in store.keys() & model.keys() if store[k] != model[k]), key=repr)
    detail = "; ".join(f"{k!r}: store {store[k]} != model {model[k]}" for k in differ[:2])
    return [("I14", f"retained runs differ: extra {extra}, missing {missing}, "
                    f"changed {differ} {detail}")]


def check_valid(state: ModelState) -> None:
    """Assert every single-state invariant of a model state, and its own structure.
    An expensive no-op when all is well; the model's tests and the explorer call it."""
    problems = state_violations(Observation.of(state), state.policy)
    seqs = [r.seq for r in state.runs]
    ids = [r.run_id for r in state.runs]
    if seqs != sorted(set(seqs)) or (seqs and seqs[-1] >= state.next_seq):
        problems.append(("I14", f"model runs out of start order: {seqs}"))
    if len(set(ids)) != len(ids):
        problems.append(("I14", f"duplicate run ids: {ids}"))
    if problems:
        iid, message = problems[0]
        raise VIOLATIONS[iid](message)
