"""What a store has, and so which checks apply to it: the declared `Capabilities` (the
type and its one map of calls live in `runbound.model.protocol`, so a store declares them
without importing a checker), read from a factory or a store it builds.

A store declares what it lacks with a `capabilities` attribute (a `Capabilities`) on its
class or its factory; what it does not declare is checked. Like SQLAlchemy's
requirements classes, a capability only ever narrows the check, and the report says what
was left out and why ("skipped").
"""

from __future__ import annotations

from runbound.model.clock import VirtualClock
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities, RunStore, StoreFactory


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
