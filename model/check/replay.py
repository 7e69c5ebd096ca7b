"""Re-run a counterexample against a store: its program (`runbound.model.check.
counterexample`, the one form `verify`, `conform` and `runbound seeds` write), step by
step, through the same machine that found it (`runbound.model.check.minimize.run_program`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from runbound.model.check import counterexample as cx
from runbound.model.check.conformance import load_factory
from runbound.model.check.minimize import run_program
from runbound.model.invariants import InvariantViolation
from runbound.model.protocol import StoreFactory


class NotReplayable(cx.BadCounterexample):
    """A counterexample with no program (a concurrent history, a probe): nothing to
    replay step by step."""


def replay(factory: StoreFactory, program: Sequence[dict[str, Any]],
           invariants: Iterable[str] | None = None,
           capabilities: Any = None) -> InvariantViolation | None:
    """The first violation of `invariants` (all by default) the program provokes in the
    store `factory` builds, or None if it runs clean."""
    return run_program(factory, program, None if invariants is None else set(invariants),
                       capabilities)


def replay_counterexample(factory: StoreFactory, found: cx.Counterexample,
                          capabilities: Any = None) -> InvariantViolation | None:
    """Replay `found`'s program, holding the store to what `found` broke (its invariant,
    or every one for an explorer's path). NotReplayable if it has no program."""
    if not found.replayable:
        raise NotReplayable(found.invariant, f"a {found.kind}, not a program: "
                                             "nothing to replay")
    return replay(factory, found.program, found.enforced(), capabilities)


def replay_file(path: Path, factory: StoreFactory | None = None,
                capabilities: Any = None) -> InvariantViolation | None:
    """Replay the counterexample in `path` against `factory` (default: the factory it
    names, `package.module:attribute`)."""
    found = cx.read(path)
    if factory is None:
        if not found.factory:
            raise cx.BadCounterexample(str(path), "names no factory: give one")
        factory = load_factory(found.factory)
    return replay_counterexample(factory, found, capabilities)
