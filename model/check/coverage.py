"""What a stateful check exercised, so that a pass is never vacuous.

An invariant about evictions says nothing about a run in which nothing was evicted. Each
step of the model (a call, or a sweep of the store's worker at its tick) is classified
here by what it did: its outcome (the call and "ok" or the error class), the status
changes it made, and the events the invariants are about (a cap eviction, a TTL expiry,
a lease reap, an event dropped from a full buffer...). Each property of the registry
names the events without which its pass decides nothing (`Invariant.witnesses`);
`verify` turns a pass that never reached one of them into "unknown" (vacuous), which
fails the run like any unknown. The
explorer has the same idea for whole worlds ("sometimes" properties,
`runbound.model.check.explore.SOMETIMES`); this is its counterpart for sampled runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runbound.model import spec
from runbound.model.errors import RunboundError
from runbound.model.invariants import INVARIANTS
from runbound.model.lifecycle import TRANSITIONS

#: event -> what it is, for the report
EVENTS: dict[str, str] = {
    "cap-eviction": "a terminal run evicted by max_terminal",
    "eviction-beside-active": "the cap evicted a run while another stayed active",
    "ttl-expiry": "a terminal run dropped past its TTL",
    "lease-reap": "an active run reaped to failed by the lease (stale_after)",
    "admission-refused": "a start refused at max_active (AdmissionRefused)",
    "events-dropped": "an event dropped from a full buffer (max_events_per_run)",
    "refusal": "a call refused with a rule's error",
    "worker-expiry": "the worker's own sweep dropped an expired run",
    "worker-reap": "the worker's own sweep reaped a stale run",
    "updated": "a run's updated_at moved (a mutation stamped it)",
    "terminated": "a run reached a terminal status",
}

#: every (from, to) status change the table allows
EDGES = frozenset((a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets)


@dataclass
class Coverage:
    """Counts, over every example of one check, of what the model's steps did."""

    #: (call, "ok" or the error class) -> how often
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (from, to) status changes taken
    edges: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the events of `EVENTS` -> how often
    events: Counter[str] = field(default_factory=Counter)

    def step(self, op: str, args: tuple[Any, ...], before: spec.ModelState,
             after: spec.ModelState, result: object) -> None:
        """One step of the model: `op` (or "worker", the store's worker's sweep)."""
        refused = isinstance(result, RunboundError)
        self.outcomes[(op, type(result).__name__ if refused else "ok")] += 1
        if refused:
            if type(result).__name__ == "AdmissionRefused":
                self.events["admission-refused"] += 1
            self.events["refusal"] += 1
        old = {r.run_id: r for r in before.runs}
        new = {r.run_id: r for r in after.runs}
        worker = op == "worker"
        own = args[0] if op in ("transition", "start") and args else None
        for rid, was in old.items():
            if op == "start" and rid == own and not refused:
                continue  # the id's old run replaced by the new one: not retention
            run = new.get(rid)
            if run is None:
                if spec.expired(was, after.policy, after.clock):
                    self.events["ttl-expiry"] += 1
                    self.events["worker-expiry"] += worker
                else:
                    self.events["cap-eviction"] += 1
                    if any(r.active for r in after.runs):
                        self.events["eviction-beside-active"] += 1
                continue
            if run.status is not was.status:
                self.edges[(was.status.value, run.status.value)] += 1
                if run.terminated_at is not None:
                    self.events["terminated"] += 1
                if was.active and rid != own and run.status.value == "failed":
                    self.events["lease-reap"] += 1
                    self.events["worker-reap"] += worker
            if run.updated_at != was.updated_at:
                self.events["updated"] += 1
            if run.dropped_events > was.dropped_events:
                self.events["events-dropped"] += 1

    def merge(self, other: Coverage) -> None:
        self.outcomes.update(other.outcomes)
        self.edges.update(other.edges)
        self.events.update(other.events)

    def missing(self, invariant: str) -> list[str]:
        """The events `invariant` needs that no step produced."""
        return [e for e in INVARIANTS[invariant].witnesses if not self.events[e]]

    def to_json(self) -> dict[str, Any]:
        return {"events": dict(sorted(self.events.items())),
                "never": sorted(set(EVENTS) - {e for e, n in self.events.items() if n}),
                "edges_never": sorted("->".join(e) for e in EDGES - self.edges.keys()),
                "outcomes": len(self.outcomes)}


def vacuous_note(invariant: str, missing: list[str], examples: int) -> str:
    """The report of a pass that decided nothing."""
    what = "; ".join(f"{e} ({EVENTS[e]})" for e in missing)
    return (f"vacuous: in {examples} calls {invariant} was never put to the test: never "
            f"{what}. Not a pass: more examples (--examples) or a policy that reaches it")
