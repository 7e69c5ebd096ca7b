"""The conformance kit, end to end: an example store written from specs/ conforms; a
broken one is reported, its counterexample replays, and the regression test it writes
fails until the store is fixed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from examples.simple_store import SimpleStore
from model.cli import main
from model.conformance import (
    Capabilities,
    StoreConformance,
    capabilities_of,
    conformance_test_case,
    load_factory,
)
from model.policy import Policy
from reference.broken import EvictsActiveStore
from reference.memory import MemoryRunStore

#: the store author's view: the whole check in their own pytest run, as a test case...
TestSimpleStoreConforms = conformance_test_case(SimpleStore)


class TestSimpleStoreByBaseClass(StoreConformance):
    """...or as a base class."""

    factory = staticmethod(SimpleStore)


def test_capabilities_are_read_from_the_store() -> None:
    assert capabilities_of(SimpleStore) == Capabilities(worker=False, thread_safe=True)
    # undeclared: everything checked; a bare `thread_safe = True` turns on I19
    assert capabilities_of(MemoryRunStore) == Capabilities(thread_safe=True)
    assert set(Capabilities(worker=False).skipped()) == {"I11", "I16", "I17", "I18", "I19"}


def test_clock_granularity_rounds_the_checks_clock_steps() -> None:
    """A store keeping whole seconds sees the machine's 0.5 s step as 1 s."""
    from model.stateful import machine_for

    machine = machine_for(MemoryRunStore, capabilities=Capabilities(clock_granularity=1.0))()
    machine.setup(Policy(), started=[])
    before = machine.clock()
    machine.advance_clock(0.5)
    assert machine.clock() - before == 1.0
    machine.teardown()


def test_load_factory_names_module_and_attribute() -> None:
    assert load_factory("reference.broken:EvictsActiveStore") is EvictsActiveStore


def test_conform_reports_a_broken_store_and_writes_replayable_counterexamples(
        tmp_path: Path) -> None:
    code = main(["conform", "reference.broken:EvictsActiveStore", "--invariant", "I4",
                 "--invariant", "I1", "--out", str(tmp_path)])
    assert code == 1
    trace = tmp_path / "EvictsActiveStore_I4.json"
    assert json.loads(trace.read_text())["invariant"] == "I4"
    assert not (tmp_path / "EvictsActiveStore_I1.json").exists()  # I1 passed
    assert main(["replay", str(trace)]) == 1
    assert main(["replay", str(trace), "reference.memory:MemoryRunStore"]) == 0
    test = tmp_path / "test_regression_EvictsActiveStore_I4.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(test)], capture_output=True, text=True, cwd=Path.cwd())
    assert result.returncode == 1 and "I4" in result.stdout, result.stdout


def test_conform_passes_the_example_store(tmp_path: Path) -> None:
    assert main(["conform", "examples.simple_store:SimpleStore", "--examples", "50",
                 "--out", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []
