"""The run lifecycle: statuses and the one transition table.

Rules of this module: everything that decides whether a status may follow another lives
here, in `TRANSITIONS`, a literal. The prose table in `specs/lifecycle.md` and the state
diagram are generated from it (`runbound spec`), and a test fails when they drift. This
module knows nothing of time, storage or threads.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from runbound.model import rules
from runbound.model.errors import IllegalTransition, InvalidArgument


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __repr__(self) -> str:
        # a status is its value (Status.RUNNING == "running"): every message and
        # counterexample that shows a run shows status='running', not the enum's
        # <Status.RUNNING: 'running'>
        return repr(self.value)

    #: member of ACTIVE, of TERMINAL: plain attributes set once below, not properties,
    #: since every checker reads them on every run at every step
    active: bool
    terminal: bool


ACTIVE: Final = frozenset({Status.PENDING, Status.RUNNING})
TERMINAL: Final = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
for _status in Status:
    _status.active = _status in ACTIVE
    _status.terminal = _status in TERMINAL

#: status -> the statuses a `transition` call may move it to. Terminal statuses are
#: absorbing (no way out); a self-loop is not a transition. The lease sweep moves an
#: active run to FAILED through this same table.
TRANSITIONS: Final[dict[Status, frozenset[Status]]] = {
    Status.PENDING: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def as_status(run_id: object, value: object) -> Status:
    """`value` as a Status, or InvalidArgument (strings like "running" are accepted)."""
    if isinstance(value, Status):
        return value
    if isinstance(value, str):
        try:
            return Status(value)
        except ValueError:
            pass
    shown = repr(value) if len(repr(value)) <= 60 else f"{type(value).__name__} value"
    raise InvalidArgument(run_id, "n/a", f"R2: status must be one of "
                          f"{[s.value for s in Status]}, got {shown}")


def check_transition(run_id: str, current: Status, target: Status) -> None:
    """Raise IllegalTransition unless the table allows current -> target."""
    allowed = TRANSITIONS[current]
    if target not in allowed:
        def rule() -> str:  # worded only if read
            names = ", ".join(sorted(s.value for s in allowed)) or "none: it is terminal"
            return rules.text("T1", current=current, target=target, allowed=names)
        raise IllegalTransition(run_id, current, rule)
