"""Re-run a recorded counterexample against a store: the program `verify` and `conform`
write into their JSON (`counterexample_program`), step by step, through the same machine
that found it (`model.minimize.run_program`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from model.invariants import InvariantViolation
from model.minimize import run_program
from model.protocol import StoreFactory


def replay(factory: StoreFactory, program: Sequence[dict[str, Any]],
           invariants: Iterable[str] | None = None,
           capabilities: Any = None) -> InvariantViolation | None:
    """The first violation of `invariants` (all by default) the program provokes in the
    store `factory` builds, or None if it runs clean."""
    return run_program(factory, program, None if invariants is None else set(invariants),
                       capabilities)
