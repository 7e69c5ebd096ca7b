"""What a store has, and so which checks apply to it.

A store declares what it lacks with a `capabilities` attribute (a `Capabilities`) on its
class or its factory; what it does not declare is checked. Like SQLAlchemy's
requirements classes, a capability only ever narrows the check, and the report says what
was left out and why ("skipped").
"""

from __future__ import annotations

from dataclasses import dataclass

from model.clock import VirtualClock
from model.policy import Policy
from model.protocol import RunStore, StoreFactory


@dataclass(frozen=True)
class Capabilities:
    """What a store has. The defaults are everything a full store has, but durability."""

    #: a cleanup worker (`start_cleanup_worker` and the rest): I11, I16, I18
    worker: bool = True
    #: `append_event` and the ring buffer: I12
    events: bool = True
    #: `heartbeat`
    heartbeat: bool = True
    #: a restart (`reopen()`, or a new store from the factory) keeps every run: I17
    durable: bool = False
    #: safe to call from many threads at once: the concurrent check (I19)
    thread_safe: bool = False
    #: the store keeps times only to this many seconds (e.g. 0.001 for milliseconds): the
    #: checks move their clock in whole multiples of it (0: any step)
    clock_granularity: float = 0.0

    def skipped(self) -> dict[str, str]:
        """Invariants left out, with the reason."""
        out: dict[str, str] = {}
        if not self.worker:
            out |= {i: "declares no cleanup worker" for i in ("I11", "I16", "I18", "E1", "E2")}
        if not self.events:
            out["I12"] = "declares no events"
        if not self.durable:
            out["I17"] = "does not declare itself durable"
        if not self.thread_safe:
            out["I19"] = "does not declare itself thread-safe"
        return out


class FactoryFailed(Exception):
    """The factory could not build a store: nothing can be checked (exit 2, not a pass)."""


def build(factory: StoreFactory) -> RunStore:
    """One store from `factory`, or FactoryFailed saying why not."""
    try:
        store = factory(Policy(), VirtualClock())
    except Exception as error:
        raise FactoryFailed(f"the factory raised {type(error).__name__}: {error}") from error
    missing = [m for m in ("start", "transition", "get", "list_runs", "prune", "snapshot",
                           "close") if not callable(getattr(store, m, None))]
    if missing:
        raise FactoryFailed(f"the factory returned {type(store).__name__}, not a store "
                            f"(no {', '.join(missing)})")
    return store


def capabilities_of(factory: StoreFactory) -> Capabilities:
    """What the factory's stores declare (FactoryFailed if it cannot build one)."""
    declared = getattr(factory, "capabilities", None)
    thread_safe = getattr(factory, "thread_safe", None)
    if declared is None:
        store = build(factory)
        declared = getattr(store, "capabilities", None)
        thread_safe = getattr(store, "thread_safe", thread_safe)
        store.close()
    if isinstance(declared, Capabilities):
        return declared
    return Capabilities(thread_safe=bool(thread_safe))  # a bare `thread_safe = True` counts
