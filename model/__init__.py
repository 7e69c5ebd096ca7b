"""runbound's executable specification of a run store, and the checkers that use it.

- `model.lifecycle`: statuses and the one transition table
- `model.policy`: retention policies
- `model.spec`: the operations, as pure functions of (state, arguments, now)
- `model.invariants`: the numbered invariants and their checks
- `model.stateful`: the Hypothesis state machine that holds a store to the model
- `model.verify`: the verdict table of `runbound verify`
"""

from model.errors import (
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
from model.lifecycle import ACTIVE, TERMINAL, TRANSITIONS, Status
from model.policy import Policy, SweepMode
from model.records import MAX_RUN_ID_LENGTH, Page, Run, SweepResult

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
