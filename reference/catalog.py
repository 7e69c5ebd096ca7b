"""Every store runbound ships, with what `runbound verify` should find of it."""

from __future__ import annotations

from dataclasses import dataclass

from model.protocol import StoreFactory
from reference import broken
from reference.memory import MemoryRunStore
from reference.seeds.adapters import S1Store, S2Store


@dataclass(frozen=True)
class Entry:
    name: str
    factory: StoreFactory
    about: str
    #: invariants it is known to break (empty: it must pass every check)
    expected: frozenset[str] = frozenset()


STORES: tuple[Entry, ...] = (
    Entry("memory", MemoryRunStore, "the reference: thread-safe, in memory"),
    # The seed replicas, with the defects their reviews name (the checker reports more).
    Entry("seed:S1", S1Store, "replica of the llms.txt server's RunStore",
          frozenset({"I2", "I15", "I16"})),
    Entry("seed:S2", S2Store, "replica of Jarvis's ChatRunRegistry after PR #61",
          frozenset({"I3"})),
)

BROKEN: tuple[Entry, ...] = tuple(
    Entry(f"x:{cls.label}", cls, (cls.__doc__ or "").split(".")[0].strip(),
          frozenset(cls.breaks))
    for cls in broken.BROKEN
)
