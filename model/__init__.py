"""runbound's executable specification of a run store, and the checkers that use it.

- `runbound.model.lifecycle`: statuses and the one transition table
- `runbound.model.policy`: retention policies
- `runbound.model.spec`: the operations, as pure functions of (state, arguments, now)
- `runbound.model.invariants`: the numbered invariants and their checks
- `runbound.model.check.stateful`: the Hypothesis state machine that holds a store to the model
- `runbound.model.check.verify`: the verdict table of `runbound verify`
"""

from runbound.model.errors import (
    AdmissionRefused,
    ClockError,
    IllegalTransition,
    InvalidArgument,
    NotActive,
    PolicyError,
    RunAlreadyActive,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import ACTIVE, TERMINAL, TRANSITIONS, Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.records import MAX_RUN_ID_LENGTH, Page, Run, SweepResult

__all__ = [
    "ACTIVE",
    "MAX_RUN_ID_LENGTH",
    "TERMINAL",
    "TRANSITIONS",
    "AdmissionRefused",
    "ClockError",
    "IllegalTransition",
    "InvalidArgument",
    "NotActive",
    "Page",
    "Policy",
    "PolicyError",
    "Run",
    "RunAlreadyActive",
    "RunboundError",
    "Status",
    "StoreClosed",
    "SweepMode",
    "SweepResult",
    "UnknownRun",
]
