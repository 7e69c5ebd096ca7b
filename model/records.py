"""The values that cross the store boundary: run snapshots, pages and sweep reports.

All are frozen: a caller holding one cannot change what a store keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbound.model.lifecycle import Status

#: Longest accepted run id, in characters (rule R1). Long enough for a UUID with a prefix,
#: short enough to index in SQLite and to use as part of a Redis key.
MAX_RUN_ID_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    status: Status
    created_at: float
    #: never decreases (I8); any successful call on the run sets it, and it is the lease's
    #: last heartbeat: `stale_after` counts from it.
    updated_at: float
    #: set iff the status is terminal (I6), stamped once at the first terminal transition
    #: and never changed (I7).
    terminated_at: float | None = None
    #: the newest `max_events_per_run` payloads, oldest first (I12).
    events: tuple[str, ...] = ()
    #: how many older events the ring buffer dropped; event n (1-based) is
    #: `events[n - dropped_events - 1]`.
    dropped_events: int = 0
    #: start order, assigned by the store: only its order is meaningful (listing is by
    #: `seq` descending), so it is left out of equality and stores number as they like.
    seq: int = field(default=0, compare=False)

    @property
    def active(self) -> bool:
        return self.status.active

    @property
    def terminal(self) -> bool:
        return self.status.terminal


@dataclass(frozen=True, slots=True)
class Page:
    """One page of `list_runs`: newest first; `next_cursor` is None on the last page."""

    runs: tuple[Run, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did, each a tuple of run ids sorted: runs moved to FAILED by the
    lease, runs dropped for their TTL, and runs dropped by the terminal cap."""

    reaped: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()
    evicted: tuple[str, ...] = ()

    @property
    def removed(self) -> int:
        return len(self.expired) + len(self.evicted)

    def __bool__(self) -> bool:
        return bool(self.reaped or self.expired or self.evicted)
