"""The spec's hot path (issue 13, item 1): what it skips must not show. A sweep that
finds nothing keeps the state object; refusals word their message only when read, and
word it exactly as before; the positional copy keeps every field."""

from __future__ import annotations

import pickle
from dataclasses import fields

from runbound.model import spec
from runbound.model.errors import IllegalTransition, UnknownRun
from runbound.model.lifecycle import ACTIVE, TERMINAL, Status
from runbound.model.policy import Policy


def test_a_sweep_that_finds_nothing_keeps_the_state_object() -> None:
    state, _ = spec.start(spec.initial(Policy(ttl=10.0, max_terminal=1)), "a", now=0.0)
    state, _ = spec.transition(state, "a", Status.FAILED, now=1.0)
    assert spec._lazy(state, 5.0) is state
    swept, result = spec.sweep(state, now=1.0)  # no later reading: no new mark either
    assert swept is state and not result
    # and one that finds something makes a new state: the test above could fail
    gone, result = spec.sweep(state, now=11.0)
    assert gone is not state and result.expired == ("a",) and gone.runs == ()


def test_the_positional_copy_passes_every_field() -> None:
    # spec._copy builds ModelState positionally (no `replace` introspection): a field
    # added or reordered must be added there too
    assert [f.name for f in fields(spec.ModelState)] == [
        "policy", "runs", "next_seq", "clock", "worker", "closed"]
    state = spec.ModelState(Policy(ttl=1.0), (), 7, 3.0, worker=True, closed=True)
    assert spec._copy(state, (), 8, 4.0) == spec.ModelState(Policy(ttl=1.0), (), 8, 4.0,
                                                             worker=True, closed=True)


def test_a_refusal_words_its_rule_when_read_and_as_before() -> None:
    state, _ = spec.start(spec.initial(Policy()), "a", now=0.0)
    state, _ = spec.transition(state, "a", Status.FAILED, now=1.0)
    _, error = spec.apply(state, "transition", ("a", Status.RUNNING), 2.0)
    assert isinstance(error, IllegalTransition)
    assert callable(error._rule)  # not worded yet
    text = ("run 'a' (state: failed): T1: cannot move failed -> running; allowed: none: "
            "it is terminal")
    assert str(error) == text
    assert repr(error) == f"IllegalTransition({text!r})"
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is IllegalTransition and str(back) == text and back.rule == error.rule
    _, missing = spec.apply(state, "get", ("b",), 2.0)
    assert isinstance(missing, UnknownRun)
    assert str(missing) == "run 'b' (state: absent): V1: no run with this id is retained"


def test_status_flags_match_the_sets() -> None:
    for status in Status:
        assert status.active == (status in ACTIVE)
        assert status.terminal == (status in TERMINAL)
