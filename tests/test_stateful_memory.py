"""The reference store conforms to the model: every invariant, every result."""

from model.stateful import machine_for
from reference.memory import MemoryRunStore

TestMemoryRunStore = machine_for(MemoryRunStore, name="MemoryMachine").TestCase
