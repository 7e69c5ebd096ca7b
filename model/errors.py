"""Every error runbound raises, under one base class.

A store refuses bad input with one of these and changes nothing (invariant I10). Each
message names the run, the state it was in and the rule broken, so a log line alone says
what went wrong; the same three facts are attributes, for code that reacts to them.
"""

from __future__ import annotations

from collections.abc import Callable


class RunboundError(Exception):
    """Base of every error a model operation or a store raises on purpose."""

    def __init__(self, run_id: object, state: object, rule: str | Callable[[], str]) -> None:
        # The message is formatted when it is read, not here: the checkers make and
        # compare refusals by the thousand and read few. A rule costly to word may come
        # as a function that words it.
        super().__init__()
        self.run_id = run_id
        self.state = state
        self._rule = rule

    @property
    def rule(self) -> str:
        if callable(self._rule):  # (not `isinstance(str)`: CrossHair's strings are not)
            self._rule = self._rule()
        return self._rule

    def __str__(self) -> str:
        return f"run {self.run_id!r} (state: {self.state}): {self.rule}"

    def __repr__(self) -> str:  # as Exception's repr of the message, when it was eager
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[type[RunboundError], tuple[object, object, str]]:
        # across processes (verify's workers), with the rule worded: a function may not
        # pickle
        return type(self), (self.run_id, self.state, self.rule)


class PolicyError(RunboundError, ValueError):
    """A policy with a negative, NaN, infinite or ill-typed limit (run_id is the field)."""


class InvalidArgument(RunboundError, ValueError):
    """A run id, status, limit, cursor or payload of the wrong type or out of range."""


class UnknownRun(RunboundError, KeyError):
    """No visible run has this id (never started, evicted, or past its TTL). Its message
    is RunboundError's, first in the method order (KeyError's would repr() it)."""


class RunAlreadyActive(RunboundError):
    """`start` of an id whose run is still active (rule A1)."""


class AdmissionRefused(RunboundError):
    """`start` while `max_active` runs are active (rule A2)."""


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


class StoreProcessError(RunboundError):
    """A store behind a process boundary (`runbound.model.check.process`) failed the wire protocol
    (`specs/wire.md`): it crashed (X1), did not answer in time (X2), wrote a line that is
    not a reply (X3), answered another request (X4), or broke the protocol otherwise (X5).
    The message names the request that caused it. Not a result to compare: a check that
    meets one reports the store as failed, never as passing."""
