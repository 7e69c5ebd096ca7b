"""The property registry (`runbound.model.invariants.INVARIANTS`): one table says each
property's kind, the checkers that decide it and the capability it needs, and every
checker reads it rather than a copy."""

from __future__ import annotations

import dataclasses

import pytest

from runbound.model.check import verify
from runbound.model.check.capabilities import capabilities_of
from runbound.model.check.probes import PROBES
from runbound.model.check.profiles import machine_settings
from runbound.model.check.stateful import StoreMachine, machine_for
from runbound.model.invariants import (
    CAPABILITY_MISSING,
    INVARIANTS,
    Checker,
    Invariant,
    Kind,
    decided_by,
)
from runbound.model.protocol import Capabilities
from runbound.reference.memory import MemoryRunStore

SETTINGS = machine_settings(max_examples=1, database=None)


def test_every_checker_the_registry_names_has_one_decider() -> None:
    """No property can name a checker `verify` cannot send it to."""
    assert set(verify.DECIDERS) == set(Checker)
    assert set(PROBES) <= set(Checker)


def test_every_capability_the_registry_needs_is_one_a_store_declares() -> None:
    fields = {f.name for f in dataclasses.fields(Capabilities)}
    assert set(CAPABILITY_MISSING) <= fields
    assert {p.needs for p in INVARIANTS.values()} - {None} <= set(CAPABILITY_MISSING)


def test_the_eventual_properties_are_the_E_ids() -> None:
    assert [i for i, p in INVARIANTS.items() if p.kind is Kind.EVENTUALLY] == ["E1", "E2"]
    assert all(p.checkers for p in INVARIANTS.values())


def test_skipped_checks_follow_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A property a store lacks the capability for is skipped, with the reason the
    registry gives: change the registry and the skip follows."""
    assert "I12" in Capabilities(events=False).skipped()
    changed = dict(INVARIANTS)
    changed["I13"] = dataclasses.replace(INVARIANTS["I13"], needs="events")
    monkeypatch.setattr("runbound.model.protocol.INVARIANTS", changed)
    assert Capabilities(events=False).skipped()["I13"] == "declares no events"
    assert "I13" not in Capabilities().skipped()


def _fake(verdicts: dict[Checker, str], calls: list[Checker]
          ) -> dict[Checker, verify.DecideFn]:
    def decider(checker: Checker) -> verify.DecideFn:
        def decide(task: verify.Task) -> verify.Check:
            calls.append(checker)
            return verify.Check(task.invariant, verdicts[checker],  # type: ignore[arg-type]
                                1, 0.5, note=f"by {checker.name}")
        return decide
    return {c: decider(c) for c in Checker}


@pytest.mark.parametrize(("verdicts", "made", "verdict"), [
    ({"STATEFUL": "pass", "START_RACE": "pass"}, ["STATEFUL", "START_RACE"], "pass"),
    ({"STATEFUL": "pass", "START_RACE": "unknown"}, ["STATEFUL", "START_RACE"], "unknown"),
    ({"STATEFUL": "fail", "START_RACE": "pass"}, ["STATEFUL"], "fail"),
])
def test_check_invariant_asks_each_checker_of_the_registry_in_order(
        monkeypatch: pytest.MonkeyPatch, verdicts: dict[str, str], made: list[str],
        verdict: str) -> None:
    """I11 is decided by the stateful check and then the start race: a pass needs both,
    the verdict is the first that is not a pass, and the seconds are those of all."""
    calls: list[Checker] = []
    monkeypatch.setattr(verify, "DECIDERS", _fake(
        {Checker[k]: v for k, v in verdicts.items()} | {Checker.FAILING_SWEEPS: "pass",
                                                        Checker.LINEARIZABILITY: "pass"},
        calls))
    check = verify.check_invariant(MemoryRunStore, "I11", SETTINGS)
    assert [c.name for c in calls] == made
    assert check.verdict == verdict
    assert check.seconds == 0.5 * len(made)
    assert check.note == "; ".join(f"by {m}" for m in made)


def test_a_property_moved_to_another_checker_is_decided_there(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """verify has no branch of its own on ids: give I4 to the linearizability check in the
    registry and that is what decides it."""
    calls: list[Checker] = []
    monkeypatch.setattr(verify, "DECIDERS", _fake(dict.fromkeys(Checker, "pass"), calls))
    changed = dict(INVARIANTS)
    changed["I4"] = Invariant("I4", "moved", checkers=(Checker.LINEARIZABILITY,))
    monkeypatch.setattr(verify, "INVARIANTS", changed)
    verify.check_invariant(MemoryRunStore, "I4", SETTINGS)
    assert calls == [Checker.LINEARIZABILITY]


def test_the_stateful_check_enforces_what_the_registry_gives_it() -> None:
    """By default the machine raises on every property the stateful check decides, and on
    none it does not (I18 and I19 are decided elsewhere)."""
    assert StoreMachine.enforce == frozenset(decided_by(Checker.STATEFUL))
    assert {"I18", "I19"}.isdisjoint(StoreMachine.enforce)
    machine = machine_for(MemoryRunStore, capabilities=capabilities_of(MemoryRunStore))
    assert machine.enforce == frozenset(decided_by(Checker.STATEFUL))
