"""The mutation suite: the store written from specs/ conforms, and every single-defect
mutant of it (examples/mutants.py) is caught by the conformance check.

"Caught" is a verdict "fail": an "unknown" is not a catch, and a mutant that survives
fails the test with the verdicts it got. The kill rate, the seconds each mutant took to
its first failure, and the reported program's length against the minimal one go to
out/mutants.json (and to stdout, `-s`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from examples.mutants import (
    KINDS,
    MUTANTS,
    SOURCE,
    MutantFactory,
    Verdict,
    line,
    patched,
    summary,
    verdicts,
)
from examples.simple_store import SimpleStore
from runbound.model.check.conformance import conform
from runbound.model.check.profiles import profile_name
from runbound.model.clock import VirtualClock
from runbound.model.errors import InvalidArgument
from runbound.model.policy import Policy

JOBS = os.cpu_count() or 1
#: examples per invariant: the default profile's budget would take the suite past its
#: time (each passing check of a mutant costs as much as one of a conforming store)
EXAMPLES = None if profile_name() == "thorough" else 50
#: stop once this many mutants survived: the test has failed by then, and each survivor
#: costs every check's whole budget (`python -m examples.mutants` checks them all)
STOP_AFTER = None if profile_name() == "thorough" else 3
OUT = Path("out/mutants.json")


def test_mutant_table_is_sound() -> None:
    """At least 40 mutants, each of a named kind, each a patch that applies exactly once,
    changes the source and still compiles; every kind has a mutant."""
    assert len(MUTANTS) >= 40
    assert {m.kind for m in MUTANTS.values()} == set(KINDS)
    original = SOURCE.read_text()
    for mutant in MUTANTS.values():
        assert mutant.minimal >= 1 and mutant.program, mutant.name
        text = patched(mutant)
        assert text != original, mutant.name
        compile(text, mutant.name, "exec")


def _accepts_an_empty_id(factory: MutantFactory) -> str:
    store = factory(Policy(), VirtualClock())
    try:
        return store.start("").run_id
    finally:
        store.close()


def test_MutantFactory_pickles_and_builds_its_mutant_in_a_spawned_process() -> None:
    """The checker runs invariants in spawned processes: the factory crosses as its name
    and builds the patched store there, defect included."""
    factory = pickle.loads(pickle.dumps(MutantFactory("start-accepts-bad-id")))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_accepts_an_empty_id, factory).result(timeout=120) == ""
    store = SimpleStore(Policy(), VirtualClock())
    with pytest.raises(InvalidArgument):
        store.start("")
    store.close()


def test_SimpleStore_conforms() -> None:
    """Every applicable invariant passes; what the store does not declare (durability) is
    skipped, and nothing is unknown."""
    report = conform(SimpleStore, jobs=JOBS, examples=EXAMPLES, name="SimpleStore")
    verdicts = {c.invariant: (c.verdict, c.note) for c in report.checks}
    assert not report.failed and not report.unknown, verdicts
    skipped = {c.invariant for c in report.checks if c.verdict == "skipped"}
    assert skipped == set(SimpleStore.capabilities.skipped()), verdicts


def test_every_mutant_is_caught() -> None:
    """Each mutant, checked to its first failing invariant: the kill rate must be 100%."""
    done: list[Verdict] = []

    def landed(result: Verdict) -> None:
        # written as each lands, so a run cut short still says how far it got
        done.append(result)
        print(line(result), flush=True)
        OUT.write_text(json.dumps(summary(done, EXAMPLES, JOBS), indent=1) + "\n")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    results = verdicts(MUTANTS, examples=EXAMPLES, jobs=JOBS, stop_after=STOP_AFTER,
                       progress=landed)
    report = summary(results, EXAMPLES, JOBS)
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nkill rate {report['kill_rate']:.1%} ({report['caught']} of "
          f"{report['mutants']} checked, {len(report['not_checked'])} not checked); median "
          f"seconds to the first failure {report['median_seconds_to_first_failure']}; "
          f"median reported/minimal length {report['median_reported_over_minimal']}")
    assert not report["survivors"], "mutants not caught:\n" + "\n".join(
        line(r) for r in results if r.caught_by is None) + (
        f"\n(stopped after {STOP_AFTER} survivors; {len(report['not_checked'])} not "
        "checked)" if report["not_checked"] else "")
