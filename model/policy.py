"""Retention policy: what a store keeps, for how long, and how it cleans up.

Every limit is optional (None = that feature is off). A limit that is negative, NaN,
infinite or of the wrong type is refused with PolicyError when the policy is built, so
no store ever holds a policy it cannot honour.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from enum import StrEnum

from runbound.model.errors import PolicyError

#: the largest limit and cursor position: what a signed 64-bit integer holds, so a store
#: in any language can take every value the spec accepts (runbound.model.spec's L2, L3)
MAX_INT = 2**63 - 1
#: the largest finite float
_FLOAT_MAX = sys.float_info.max


class SweepMode(StrEnum):
    """When time-driven retention (TTL expiry, lease reaping) is applied.

    LAZY: at the start of every mutating call. BACKGROUND: only by `prune()`, which the
    cleanup worker calls every interval. BOTH: both. The caps (`max_terminal`,
    `max_active`) do not wait for a sweep: they hold after every call in every mode.
    """

    LAZY = "lazy"
    BACKGROUND = "background"
    BOTH = "both"


class UnboundedRetention(UserWarning):
    """A policy that bounds active runs but keeps terminal ones forever."""


@dataclass(frozen=True, slots=True)
class Policy:
    #: seconds a terminal run is kept after `terminated_at`; expired when
    #: `now >= terminated_at + ttl` (one expiry test, `expired()`, used everywhere).
    ttl: float | None = None
    #: most terminal runs retained; the oldest terminated (then oldest started) go first.
    max_terminal: int | None = None
    #: most active runs; a `start` beyond it raises AdmissionRefused.
    max_active: int | None = None
    #: ring buffer size per run; the oldest event is dropped and counted.
    max_events_per_run: int | None = None
    #: lease: an active run not updated for this long is moved to FAILED by a sweep.
    stale_after: float | None = None
    sweep: SweepMode = SweepMode.LAZY

    def __post_init__(self) -> None:
        for name in ("ttl", "stale_after"):
            _check_number(name, getattr(self, name), integral=False)
        for name in ("max_terminal", "max_active", "max_events_per_run"):
            _check_number(name, getattr(self, name), integral=True)
        if not isinstance(self.sweep, SweepMode):
            try:
                object.__setattr__(self, "sweep", SweepMode(self.sweep))
            except ValueError:
                raise PolicyError("sweep", self.sweep,
                                  f"P2: sweep must be one of {[m.value for m in SweepMode]}"
                                  ) from None

        if (self.max_active is not None and self.stale_after is not None
                and self.ttl is None and self.max_terminal is None):
            warnings.warn(UnboundedRetention(
                "max_active and stale_after bound the active runs, but with neither ttl "
                "nor max_terminal every run the lease reaps is kept forever"), stacklevel=3)

    @property
    def lazy(self) -> bool:
        return self.sweep is not SweepMode.BACKGROUND

    @property
    def size_bound(self) -> int | None:
        """The most runs a store under this policy may hold (invariant I2), if bounded."""
        if self.max_active is None or self.max_terminal is None:
            return None
        return self.max_active + self.max_terminal


def _check_number(name: str, value: object, *, integral: bool) -> None:
    if value is None:
        return
    kinds: tuple[type, ...] = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an int" if integral else "a number"
        raise PolicyError(name, value, f"P1: {name} must be {kind} or None, got {value!r}")
    assert isinstance(value, int | float)
    # an int too large for a float (10**400) is no more finite to a store than inf is;
    # checked first, since math.isnan cannot take it. (Caps have no upper bound here: a
    # cap past any store's size is as good as none.)
    if not integral and isinstance(value, int) and value > _FLOAT_MAX:
        raise PolicyError(name, "<int too large>", f"P1: {name} must be finite and >= 0")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise PolicyError(name, value, f"P1: {name} must be finite and >= 0, got {value!r}")
