"""Every store runbound ships, with what `runbound verify` should find of it."""

from __future__ import annotations

from dataclasses import dataclass

from model.protocol import StoreFactory
from reference import broken
from reference.memory import MemoryRunStore


@dataclass(frozen=True)
class Entry:
    name: str
    factory: StoreFactory
    #: True: must pass every check. False: must fail at least one (a replica of a
    #: defective system, or a deliberately broken store).
    conforms: bool
    about: str


STORES: tuple[Entry, ...] = (
    Entry("memory", MemoryRunStore, True, "the reference: thread-safe, in memory"),
)

BROKEN: tuple[Entry, ...] = tuple(
    Entry(f"broken/{cls.__name__}", cls, False, (cls.__doc__ or "").split("\n")[0])
    for cls in broken.BROKEN
)
