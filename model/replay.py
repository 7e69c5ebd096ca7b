"""Re-run a recorded counterexample against a store: the program `verify` writes into
its JSON (`counterexample_program`), step by step, through the same checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from model.invariants import InvariantViolation
from model.policy import Policy
from model.protocol import StoreFactory
from model.stateful import from_json, machine_for


def replay(factory: StoreFactory, program: Sequence[dict[str, Any]],
           invariants: Iterable[str] | None = None) -> InvariantViolation | None:
    """The first violation of `invariants` (all by default) the program provokes in the
    store `factory` builds, or None if it runs clean."""
    machine = machine_for(factory, enforce=invariants, restarts=True)()
    try:
        for step in program:
            op, args = step["op"], [from_json(a) for a in step.get("args", [])]
            if op == "setup":
                machine.setup(Policy(**step["policy"]), started=[])
            elif op == "advance_clock":
                machine.advance_clock(*args)
            elif op == "restart":
                machine.restart()
            else:
                store_args = step.get("store_args")
                machine._do(op, *args, store_args=None if store_args is None
                            else tuple(from_json(a) for a in store_args))
        machine.teardown()
    except InvariantViolation as violation:
        _quietly_close(machine)
        return violation
    return None


def _quietly_close(machine: Any) -> None:
    store = machine.store
    if store is not None:
        store.close()
        release = getattr(store, "release", None)
        if callable(release):
            release()
