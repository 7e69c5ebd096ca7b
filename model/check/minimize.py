"""Counterexamples made exact: replay a failing program and drop what it does not need.

Hypothesis finds a failing program; this module makes it 1-minimal -- removing any
single step (a call, a clock move) makes it pass -- by replaying candidates through the
same machine that generated it (`StoreMachine.perform`), and simplifies its policy
towards each feature being off (None), then zero. Delta debugging (Zeller's ddmin):
chunks first, halving, then single steps, to a fixpoint.

Bounded by effort, not seconds: at most `budget` replays, so the same failure gives the
same program on a loaded machine. A budget spent before the fixpoint is said in the
result (`minimal=False`), never passed off as minimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runbound.model.calls import Step
from runbound.model.check.coverage import Coverage
from runbound.model.check.stateful import CheckUnknown, machine_for
from runbound.model.invariants import InvariantViolation
from runbound.model.protocol import StoreFactory, dispose


def run_program(factory: StoreFactory, program: Sequence[Step], enforce: set[str] | None,
                capabilities: Any = None, coverage: Coverage | None = None
                ) -> InvariantViolation | None:
    """Replay `program` (its first step is the set-up) against a new store; the first
    violation of `enforce` (all invariants if None), or None if it runs clean. What the
    model's steps did is added to `coverage` if given."""
    machine = machine_for(factory, enforce=enforce, restarts=True,
                          capabilities=capabilities)()
    if coverage is not None:
        machine.coverage = coverage  # type: ignore[misc]  # this replay's own count
    try:
        for step in program:
            machine.perform(step)
        machine.teardown()
    except InvariantViolation as violation:
        _quietly_close(machine)
        return violation
    except BaseException:
        _quietly_close(machine)
        raise
    return None


def _quietly_close(machine: Any) -> None:
    store = machine.store
    if store is None:
        return
    dispose(store, on_error=lambda error: None)  # the store is already being reported


@dataclass
class Minimized:
    program: list[Step]
    violation: InvariantViolation
    #: True iff removing any single step was tried and made the program pass
    minimal: bool
    replays: int


def minimize(factory: StoreFactory, program: Sequence[Step], invariant: str,
             capabilities: Any = None, *, budget: int = 600) -> Minimized | None:
    """The smallest program found that still breaks `invariant`; None if `program` no
    longer does on replay (a flaky failure: the caller reports that)."""
    replays = 0

    def fails(candidate: Sequence[Step]) -> InvariantViolation | None:
        nonlocal replays
        replays += 1
        try:
            violation = run_program(factory, candidate, {invariant}, capabilities)
        except CheckUnknown:
            return None
        return violation if violation is not None and violation.invariant == invariant \
            else None

    best = list(program)
    found = fails(best)
    if found is None:
        return None
    best, found = _plain_ids(best, found, fails)
    if best[0].get("observe") is False:  # observed after every step is the plainer story
        candidate = [{**best[0], "observe": True}, *best[1:]]
        violation = fails(candidate)
        if violation is not None:
            best, found = candidate, violation
    minimal = False
    while replays < budget:
        simpler, found = _simplify_policy(best, found, fails)
        if simpler == best and minimal:
            break  # a policy no simpler, a program no shorter: done
        best, found, minimal = _shorten(simpler, found, fails, lambda: replays < budget)
    return Minimized(best, found, minimal and replays <= budget, replays)


def _shorten(program: list[Step], found: InvariantViolation, fails: Any,
             budget_left: Any) -> tuple[list[Step], InvariantViolation, bool]:
    """Delta debugging over the steps after the set-up: chunks, halving, then single
    steps to a fixpoint. True iff it reached the fixpoint (1-minimal)."""
    best = program
    chunk = max(1, (len(best) - 1) // 2)
    while budget_left():
        changed = False
        i = len(best) - chunk
        while i >= 1 and budget_left():  # from the end: later steps depend on earlier
            candidate = best[:i] + best[i + chunk:]
            violation = fails(candidate)
            if violation is not None:
                best, found, changed = candidate, violation, True
            i -= chunk  # the steps before i are unchanged either way
        if i < 1 and chunk == 1 and not changed:  # a whole pass of single removals failed
            return best, found, True
        if not changed:
            chunk = max(1, chunk // 2)
    return best, found, False


PLAIN = ("a", "b", "c")


def _plain_ids(program: list[Step], found: InvariantViolation, fails: Any
               ) -> tuple[list[Step], InvariantViolation]:
    """The example's run ids renamed "a", "b", "c", where the failure survives that: a
    hostile id stays only when it is the point."""
    ids = list(program[0].get("ids", []))
    rename = {old: new for old, new in zip(ids, PLAIN, strict=False) if old != new}
    if not rename or set(rename.values()) & set(ids) - set(rename):
        return program, found

    def plain(value: object) -> object:
        return rename.get(value, value) if isinstance(value, str) else value

    candidate = [{**program[0], "ids": [plain(i) for i in ids]}]
    for step in program[1:]:
        new = dict(step)
        for key in ("args", "store_args"):
            if key in step:
                new[key] = [plain(a) for a in step[key]]
        candidate.append(new)
    violation = fails(candidate)
    return (candidate, violation) if violation is not None else (program, found)


def _simplify_policy(program: list[Step], found: InvariantViolation, fails: Any
                     ) -> tuple[list[Step], InvariantViolation]:
    """Each policy field towards off (None), then zero, then the smallest value that
    keeps the failure (1, 2, ... below the one it has); the sweep mode towards lazy."""
    for field in list(program[0]["policy"]):
        value = program[0]["policy"][field]
        if value is None or value == "lazy":
            continue
        if field == "sweep":
            options: list[object] = ["lazy"]
        else:
            options = [None, *(type(value)(n) for n in range(0, 4) if n < value)]
        for simpler in options:
            policy = program[0]["policy"]
            candidate = [{**program[0], "policy": {**policy, field: simpler}}, *program[1:]]
            violation = fails(candidate)
            if violation is not None:
                program, found = candidate, violation
                break
    return program, found
