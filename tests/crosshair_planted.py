"""A planted contract violation CrossHair must find (tests/test_contracts.py): the terminal
cap of `runbound.model.spec.enforce_cap`, written the way the first broken store does it, with the
model's own contract. Not a test module: CrossHair checks it."""

from __future__ import annotations

from runbound.model.policy import Policy
from runbound.model.records import Run


def enforce_cap_oldest_started(runs: tuple[Run, ...], policy: Policy
                               ) -> tuple[tuple[Run, ...], tuple[str, ...]]:
    """Drop the oldest *started* runs beyond the cap, active or not: wrong (I4).

    pre: all((r.terminated_at is not None) == r.terminal for r in runs)
    post: all(r in __return__[0] for r in runs if r.active)
    """
    cap = policy.max_terminal
    if cap is None:
        return runs, ()
    excess = sum(r.terminal for r in runs) - cap
    if excess <= 0:
        return runs, ()
    return runs[excess:], tuple(r.run_id for r in runs[:excess])
