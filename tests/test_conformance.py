"""The conformance kit, end to end: an example store written from specs/ conforms; a
broken one is reported, its counterexample replays, and the regression test it writes
fails until the store is fixed."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from examples.simple_store import SimpleStore
from runbound.cli import main
from runbound.model.calls import policy_to_json
from runbound.model.check.conformance import (
    Capabilities,
    StoreConformance,
    capabilities_of,
    conformance_test_case,
    load_factory,
)
from runbound.model.check.stateful import machine_for
from runbound.model.clock import Clock
from runbound.model.policy import Policy
from runbound.model.protocol import dispose
from runbound.model.records import Run
from runbound.reference.broken import EvictsActiveStore
from runbound.reference.memory import MemoryRunStore

#: the store author's view: the whole check in their own pytest run, as a test case...
TestSimpleStoreConforms = conformance_test_case(SimpleStore)


class TestSimpleStoreByBaseClass(StoreConformance):
    """...or as a base class."""

    factory = staticmethod(SimpleStore)


def test_capabilities_are_read_from_the_store() -> None:
    assert capabilities_of(SimpleStore) == Capabilities(thread_safe=True)
    # undeclared: everything checked; a bare `thread_safe = True` turns on I19
    assert capabilities_of(MemoryRunStore) == Capabilities(thread_safe=True)
    assert set(Capabilities(worker=False).skipped()) == {"I11", "I16", "I17", "I18", "I19",
                                                         "E1", "E2"}


def test_clock_granularity_rounds_the_checks_clock_steps() -> None:
    """A store keeping whole seconds sees the machine's 0.5 s step as 1 s."""
    machine = machine_for(MemoryRunStore, capabilities=Capabilities(clock_granularity=1.0))()
    machine.perform({"op": "setup", "policy": policy_to_json(Policy())})
    before = machine.clock()
    machine._clock(cast(Any, _Draw(0.5)))
    assert machine.clock() - before == 1.0
    machine.teardown()


class _Draw:
    """Stands for Hypothesis's `data` where a test picks the drawn value itself."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, strategy: object) -> object:
        return self.value


def test_load_factory_names_module_and_attribute() -> None:
    assert load_factory("runbound.reference.broken:EvictsActiveStore") is EvictsActiveStore


def test_conform_reports_a_broken_store_and_writes_replayable_counterexamples(
        tmp_path: Path) -> None:
    code = main(["conform", "runbound.reference.broken:EvictsActiveStore", "--invariant", "I4",
                 "--invariant", "I1", "--out", str(tmp_path)])
    assert code == 1
    trace = tmp_path / "runbound_reference_broken_EvictsActiveStore_I4.json"
    assert json.loads(trace.read_text())["invariant"] == "I4"
    # I1 passed: no file
    assert not (tmp_path / "runbound_reference_broken_EvictsActiveStore_I1.json").exists()
    assert main(["replay", str(trace)]) == 1
    assert main(["replay", str(trace), "runbound.reference.memory:MemoryRunStore"]) == 0
    test = tmp_path / "test_regression_runbound_reference_broken_EvictsActiveStore_I4.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(test)], capture_output=True, text=True, cwd=Path.cwd())
    assert result.returncode == 1 and "I4" in result.stdout, result.stdout


def test_conform_passes_the_example_store(tmp_path: Path) -> None:
    assert main(["conform", "examples.simple_store:SimpleStore", "--examples", "50",
                 "--out", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []


_failed_once = False


class FailsOnceStore(MemoryRunStore):
    """Its first `start` in a process answers wrong; never again: a failure that does
    not replay."""

    def start(self, run_id: str) -> Run:
        global _failed_once
        run = super().start(run_id)
        if not _failed_once:
            _failed_once = True
            return replace(run, created_at=run.created_at + 1)
        return run


def no_store(policy: Policy, clock: Clock) -> object:
    return None


def raising_factory(policy: Policy, clock: Clock) -> object:
    raise RuntimeError("no database configured")


def test_unknown_is_never_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                 ) -> None:
    """A failure that does not replay is "unknown": the run exits 1 and says why, unless
    the user tolerates unknowns."""
    args = ["conform", "test_conformance:FailsOnceStore", "--invariant", "I13", "--jobs",
            "1", "--out", str(tmp_path)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "0 pass, 0 fail, 1 unknown" in out and "unknown I13:" in out, out
    global _failed_once
    _failed_once = False
    assert main([*args, "--allow-unknown"]) == 0


@pytest.mark.parametrize(("spec", "says"), [
    ("test_conformance:raising_factory", "no database configured"),
    ("test_conformance:no_store", "not a store"),
    ("nosuchmodule:factory", "cannot import"),
    ("runbound.reference.memory:NoSuchStore", "no attribute"),
    ("runbound.reference.memory", "expected package.module:factory"),
])
def test_a_factory_that_cannot_build_a_store_is_a_usage_error(
        spec: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conform", spec]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


def test_the_cli_refuses_names_it_does_not_know(capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    assert main(["verify", "--store", "nosuchstore"]) == 2
    assert "no store matches nosuchstore" in capsys.readouterr().err
    assert main(["conform", "runbound.reference.memory:MemoryRunStore", "--invariant", "I99"]) == 2
    assert "no such invariant: I99" in capsys.readouterr().err


class _Unclosable(MemoryRunStore):
    """A store whose close raises, and whose harness hook counts."""

    released = 0

    def close(self) -> None:
        raise OSError("disk gone")

    def release(self) -> None:
        self.released += 1


def test_dispose_releases_a_store_whose_close_raised() -> None:
    """What only the harness can end is ended even when close() fails; the error is the
    caller's to raise or to note."""
    store = _Unclosable(Policy())
    with pytest.raises(OSError, match="disk gone"):
        dispose(store)
    assert store.released == 1
    noted: list[Exception] = []
    dispose(store, on_error=noted.append)
    assert store.released == 2 and isinstance(noted[0], OSError)
