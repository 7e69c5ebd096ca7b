"""Every store runbound ships, with what `runbound verify` should find of it."""

from __future__ import annotations

from dataclasses import dataclass

from runbound.model.protocol import StoreFactory
from runbound.reference import broken
from runbound.reference.memory import MemoryRunStore
from runbound.reference.redis_server import on_local_server
from runbound.reference.seeds.s1_adapter import FixedS1Store, S1Store
from runbound.reference.seeds.s2_adapter import FixedS2Store, S2Store
from runbound.reference.sqlite import on_disk as sqlite_on_disk


@dataclass(frozen=True)
class Entry:
    name: str
    factory: StoreFactory
    about: str
    #: invariants it is known to break (empty: it must pass every check)
    expected: frozenset[str] = frozenset()
    #: True: it must break exactly those and pass the rest (the reference, a fix);
    #: False: at least those (a replica, a broken store: the checker may find more)
    exact: bool = True


STORES: tuple[Entry, ...] = (
    # In memory by design: a restart loses everything (I17). The durable stores keep it.
    Entry("memory", MemoryRunStore, "the reference: thread-safe, in memory",
          frozenset({"I17"})),
    Entry("sqlite", sqlite_on_disk, "durable, embedded: one SQLite file, WAL"),
    Entry("redis", on_local_server, "shared: Lua scripts on a redis-server of its own"),
    # The seed replicas, with the defects their reviews name; the checker reports more.
    Entry("seed:S1", S1Store, "replica of the llms.txt server's RunStore",
          frozenset({"I2", "I3", "I11", "I15", "I16", "I17", "I18"}), exact=False),
    Entry("seed:S2", S2Store, "replica of Jarvis's ChatRunRegistry after PR #61",
          frozenset({"I3", "I17"}), exact=False),
    # The smallest fixes: their API stays the seed's (I13, I14 differ from runbound's in
    # vocabulary) and they stay in memory (I17); every other invariant must hold.
    # (I19 compares concurrent results with the model's too, so the vocabulary shows.)
    Entry("fixed:S1", FixedS1Store, "S1 with the smallest changes that keep its promises",
          frozenset({"I13", "I14", "I17", "I19"}), exact=True),
    Entry("fixed:S2", FixedS2Store, "S2 with the smallest changes that keep its promises",
          frozenset({"I13", "I14", "I17", "I19"}), exact=True),
)

BROKEN: tuple[Entry, ...] = tuple(
    Entry(f"x:{cls.label}", cls, (cls.__doc__ or "").split(".")[0].strip(),
          frozenset(cls.breaks), exact=False)
    for cls in broken.BROKEN
)
