"""The conformance kit: hold someone else's store to the model.

A store declares what it lacks with a `capabilities` attribute (a `Capabilities`); what
it does not declare is checked. Like SQLAlchemy's requirements classes, a capability only
ever narrows the check, and the report says what was left out and why.

- `runbound conform package.module:factory` runs every applicable invariant, prints the
  table, writes each counterexample as a JSON trace and as a pytest regression test, and
  exits 1 on a violation.
- `runbound replay TRACE package.module:factory` re-runs one trace.
- In the author's own pytest run: `TestMyStore = conformance_test_case(factory)`, or
  `class TestMyStore(StoreConformance): factory = staticmethod(factory)`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import re
import sys
import unittest
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, cast

from runbound.model.check import counterexample as cx
from runbound.model.check.capabilities import FactoryFailed, build, capabilities_of
from runbound.model.check.process import exec_factory
from runbound.model.check.profiles import VERIFY_EXAMPLES, machine_settings, profile_name
from runbound.model.check.stateful import machine_for
from runbound.model.check.verify import Check, StoreReport, check_invariant, skipped_checks
from runbound.model.invariants import INVARIANTS, Checker, decided_by
from runbound.model.protocol import Capabilities, StoreFactory

__all__ = ["BadFactorySpec", "Capabilities", "FactoryFailed", "StoreConformance", "build",
           "capabilities_of", "conform", "conformance_test_case", "load_factory",
           "skipped_checks", "write_counterexamples"]


class BadFactorySpec(ValueError):
    """`package.module:factory` that names nothing: a usage error."""


def load_factory(spec: str) -> StoreFactory:
    """`package.module:attribute` -> the factory it names (BadFactorySpec if none);
    `exec:COMMAND` -> a factory of stores that are processes of COMMAND (specs/wire.md)."""
    if spec.startswith("exec:"):

        return exec_factory(spec.removeprefix("exec:"))
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise BadFactorySpec(f"expected package.module:factory, got {spec!r}")
    if os.getcwd() not in sys.path:  # the author's own package, run from its checkout
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module)
    except ImportError as error:
        raise BadFactorySpec(f"cannot import {module!r}: {error}") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise BadFactorySpec(f"{module!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise BadFactorySpec(f"{spec!r} is not callable")
    return cast(StoreFactory, target)


#: the order `conform` checks invariants in: the broad lockstep check first (most defects
#: show as a wrong result within a few calls), then the worker's own (a store that leaks
#: its worker's thread at close leaks one per example, slowing every check after it),
#: the probes and the concurrent check, which take longest, last
FAIL_FAST_ORDER = ("I13", "I16", "I11", "I14", "I10", "I4", "I3", "I1", "I2", "I5", "I6",
                   "I7", "I8", "I9", "I12", "I15", "E1", "E2", "I17", "I18", "I19")
assert set(FAIL_FAST_ORDER) == set(INVARIANTS)


def conform(factory: StoreFactory, *, capabilities: Capabilities | None = None,
            invariants: Iterable[str] | None = None, examples: int | None = None,
            jobs: int = 1, fail_fast: bool = False, name: str = "store",
            progress: Callable[[Check], None] | None = None) -> StoreReport:
    """Hold the stores `factory` builds to the model: every invariant the capabilities
    leave in, `jobs` at a time in separate processes, in `FAIL_FAST_ORDER`; each verdict
    goes to `progress` as it lands. `fail_fast`: stop at the first failure (checks not
    run are left out of the report). FactoryFailed if the factory cannot build a store."""
    caps = capabilities or capabilities_of(factory)
    build(factory).close()  # a factory that raises is an error, not a store to check
    wanted = set(INVARIANTS if invariants is None else invariants)
    skipped = caps.skipped()
    todo = [i for i in FAIL_FAST_ORDER if i in wanted and i not in skipped]
    settings = conform_settings(examples)
    report = StoreReport(name)

    def land(check: Check) -> bool:
        report.checks.append(check)
        if progress is not None:
            progress(check)
        return fail_fast and check.verdict == "fail"

    if jobs > 1 and len(todo) > 1 and _picklable(factory, caps):
        pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(todo)))
        try:
            for check in pool.imap_unordered(_check_one, [(factory, i, settings, caps)
                                                          for i in todo]):
                if land(check):
                    break  # fail fast: the checks still running are ended below
        finally:
            pool.terminate()
            pool.join()
    else:
        for iid in todo:
            if land(check_invariant(factory, iid, settings, caps)):
                break
    report.checks += [c for c in skipped_checks(caps) if c.invariant in wanted]
    order = list(INVARIANTS)
    report.checks.sort(key=lambda c: order.index(c.invariant))
    return report


def _check_one(task: tuple[StoreFactory, str, Any, Capabilities]) -> Check:
    factory, invariant, settings, caps = task
    return check_invariant(factory, invariant, settings, caps)


def _picklable(*values: object) -> bool:
    """Whether the checks can go to other processes (a lambda or a local factory cannot:
    they then run in this one)."""
    try:
        pickle.dumps(values)
    except Exception:
        return False
    return True


def conformance_test_case(factory: StoreFactory,
                          capabilities: Capabilities | None = None) -> type[unittest.TestCase]:
    """A unittest case (pytest collects it) running the stateful check on every
    applicable invariant at once: `TestMyStore = conformance_test_case(my_factory)`."""
    caps = capabilities or capabilities_of(factory)
    enforce = [i for i in decided_by(Checker.STATEFUL) if i not in caps.skipped()]
    machine = machine_for(factory, name="ConformanceMachine", enforce=enforce,
                          restarts=caps.durable, capabilities=caps)
    case: type[unittest.TestCase] = cast(Any, machine).TestCase
    return case


class StoreConformance(unittest.TestCase):
    """The same check as a base class: `class TestMyStore(StoreConformance):` with
    `factory = staticmethod(my_factory)` (and `capabilities = Capabilities(...)` if the
    store does not declare them itself)."""

    factory: ClassVar[Any] = None  # a StoreFactory (Any: a callable class attribute)
    capabilities: ClassVar[Capabilities | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.factory is not None:
            case: Any = conformance_test_case(cls.factory, cls.capabilities)
            cls.runTest = case.runTest  # type: ignore[attr-defined]
            cls.settings = case.settings  # type: ignore[attr-defined]


def write_counterexamples(report: StoreReport, spec: str, out: Path) -> list[Path]:
    """For each failed check with a program: the counterexample (its one JSON form,
    `runbound.model.check.counterexample`) and a pytest regression test that fails while
    the store still breaks the invariant."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for check in report.checks:
        found = check.counterexample
        if check.verdict != "fail" or found is None or not found.replayable:
            continue
        # named after the store's module and factory: two factories called `factory`
        # in different modules do not overwrite each other's files
        stem = f"{re.sub(r'[^A-Za-z0-9]+', '_', spec).strip('_')}_{check.invariant}"
        trace = cx.write(replace(found, factory=spec), out / f"{stem}.json")
        test = out / f"test_regression_{stem}.py"
        test.write_text(REGRESSION.format(
            invariant=check.invariant, spec=spec, trace=trace.name, stem=stem,
            shown="\n".join(f"#   {line}" for line in cx.render(found).splitlines())))
        written += [trace, test]
    return written


REGRESSION = '''"""Regression test written by `runbound conform`: the store broke {invariant}.
It fails while the store still does; delete it when it passes for good."""

# What it found:
{shown}

from pathlib import Path

from runbound.model.check.conformance import load_factory
from runbound.model.check.counterexample import Counterexample, render
from runbound.model.check.replay import replay_file


def test_{stem}() -> None:
    violation = replay_file(Path(__file__).parent / "{trace}", load_factory("{spec}"))
    assert violation is None, render(Counterexample.of_violation(violation))
'''


def conform_settings(examples: int | None = None) -> Any:
    """verify's budget (None: the profile's), derandomized: the same store gives the same
    report. ValueError for fewer than one example: 0 is not "the default"."""
    if examples is None:
        examples = VERIFY_EXAMPLES[profile_name()]
    if examples < 1:
        raise ValueError(f"examples must be at least 1, got {examples}")
    return machine_settings(database=None, derandomize=True, max_examples=examples)
