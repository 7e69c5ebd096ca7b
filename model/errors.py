"""Every error runbound raises, under one base class.

A store refuses bad input with one of these and changes nothing (invariant I10). Each
message names the run, the state it was in and the rule broken, so a log line alone says
what went wrong; the same three facts are attributes, for code that reacts to them.
"""

from __future__ import annotations


class RunboundError(Exception):
    """Base of every error a model operation or a store raises on purpose."""

    def __init__(self, run_id: object, state: object, rule: str) -> None:
        self.run_id = run_id
        self.state = state
        self.rule = rule
        super().__init__(f"run {run_id!r} (state: {state}): {rule}")


class PolicyError(RunboundError, ValueError):
    """A policy with a negative, NaN, infinite or ill-typed limit (run_id is the field)."""


class InvalidArgument(RunboundError, ValueError):
    """A run id, status, limit, cursor or payload of the wrong type or out of range."""


class UnknownRun(RunboundError, KeyError):
    """No visible run has this id (never started, evicted, or past its TTL)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return Exception.__str__(self)


class RunAlreadyActive(RunboundError):
    """`start` of an id whose run is still active (rule S1)."""


class AdmissionRefused(RunboundError):
    """`start` while `max_active` runs are active (rule S2)."""


class IllegalTransition(RunboundError):
    """A status change the transition table does not allow (rule T1)."""


class NotActive(RunboundError):
    """`heartbeat` or `append_event` on a terminal run (rule T2)."""


class StoreClosed(RunboundError):
    """Any call after `close()` (rule L1)."""


class ClockError(RunboundError):
    """The store's clock read NaN or an infinity (rule C1): the call is refused, the store
    unchanged, its high-water mark too. A reading that is finite but behind the mark is
    not an error: the mark is used instead."""
