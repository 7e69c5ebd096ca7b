"""The fast frontier of `runbound check-log` (`log.Checker`) against its oracle, the plain
one (`log.PlainChecker`): on small random logs, concurrent calls and planted wrong
answers included, both give the same verdict, at the same call, with the same numbers;
a checker with a planted defect is told apart; and a call placed before it returned is
not made twice when it returns alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbound.model import spec
from runbound.model.calls import policy_to_json, result_to_json
from runbound.model.check import log
from runbound.model.check.log import Checker, Entry, LogVerdict, PlainChecker, check_log
from runbound.model.errors import RunboundError
from runbound.model.policy import Policy

#: small enough that TTLs, leases, caps and admission all bite within a few calls
POLICY = Policy(ttl=2.0, stale_after=3.0, max_terminal=1, max_active=2,
                max_events_per_run=1)
CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("start", ("a",)), ("start", ("b",)), ("transition", ("a", "running")),
    ("transition", ("a", "completed")), ("transition", ("b", "failed")),
    ("heartbeat", ("a",)), ("append_event", ("a", "e")), ("get", ("a",)), ("get", ("b",)),
    ("list_runs", (1, None, None)), ("list_runs", (1, None, "2")), ("prune", ()),
    ("len", ()), ("list_runs", (True, None, None)),
]
READINGS = (0.0, 1.0, 2.5, 4.0, 7.0)
SETTINGS = settings(max_examples=250, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def logs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A log's calls: a few threads of sequential calls on one time line (so they
    overlap), each answered by the model in one order that respects real time; and,
    half the time, one answer replaced by another call's."""
    calls: list[dict[str, Any]] = []
    for thread in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(1, 6))):
            op, args = draw(st.sampled_from(CALLS))
            inv = at + draw(st.integers(1, 2))
            ret = inv + draw(st.integers(0, 8))
            calls.append({"op": op, "args": list(args), "inv": inv, "ret": ret,
                          "now": draw(st.sampled_from(READINGS)), "t": thread,
                          "point": draw(st.integers(inv, ret))})
            at = ret
    state = spec.initial(POLICY)
    for call in sorted(calls, key=lambda c: (c["point"], c["inv"])):
        state, result = spec.apply(state, call["op"], tuple(call["args"]), call["now"])
        call.update(_answer(result))
    if draw(st.booleans()):  # a wrong answer planted
        victim, donor = draw(st.permutations(range(len(calls))))[:2] if len(calls) > 1 \
            else (0, 0)
        for key in ("ok", "err"):
            calls[victim].pop(key, None)
        calls[victim].update({k: v for k, v in calls[donor].items() if k in ("ok", "err")}
                             if donor != victim else {"err": {"class": "UnknownRun"}})
    return calls


def _answer(result: object) -> dict[str, Any]:
    if isinstance(result, RunboundError):
        return {"err": {"class": type(result).__name__, "message": str(result)}}
    return {"ok": result_to_json(result)}


def _write(path: Path, calls: list[dict[str, Any]]) -> None:
    header = {"runbound_log": log.FORMAT, "store": "drawn", "policy": policy_to_json(POLICY),
              "clock_readings": True}
    lines = [json.dumps(header)]
    lines += [json.dumps({"thread": t, "at": 0}) for t in sorted({c["t"] for c in calls})]
    lines += [json.dumps({k: v for k, v in c.items() if k != "point"})
              for c in sorted(calls, key=lambda c: c["ret"])]  # as a recorder writes them
    path.write_text("\n".join(lines) + "\n")


def _seen(verdict: LogVerdict) -> tuple[object, ...]:
    culprit = None if verdict.culprit is None else verdict.culprit.line
    return (verdict.verdict, verdict.calls, verdict.note, culprit,
            [e.line for e in verdict.window], verdict.overlapping, verdict.max_running,
            verdict.max_configurations)


def _agree(path: Path, calls: list[dict[str, Any]], fast: type[PlainChecker],
           budget: int, tables: str = "as is") -> None:
    """Both checkers on the log of `calls`, with `budget`. `tables`: "compact", the fast
    one's tables compacted after every call; "narrow", one bit for the calls placed at
    first (so it widens its configurations as calls overlap)."""
    _write(path, calls)
    held = 1 if tables == "compact" else log.STATES_HELD
    shift = 1 if tables == "narrow" else log.FIRST_SHIFT
    with mock.patch.object(log, "BUDGET", budget), \
            mock.patch.object(log, "STATES_HELD", held), \
            mock.patch.object(log, "FIRST_SHIFT", shift):
        oracle = check_log(path, checker=PlainChecker)
        assert _seen(check_log(path, checker=fast)) == _seen(oracle)


def _budgets() -> st.SearchStrategy[int]:
    """Mostly the real budget; sometimes one small enough that some searches run out
    of it (both must then say "unknown" at the same call)."""
    return st.sampled_from([log.BUDGET, log.BUDGET, 6, 20])


@SETTINGS
@given(calls=logs(), budget=_budgets(),
       tables=st.sampled_from(["as is", "compact", "narrow"]))
def test_fast_frontier_gives_the_plain_verdict(tmp_path_factory: Any,
                                               calls: list[dict[str, Any]],
                                               budget: int, tables: str) -> None:
    _agree(tmp_path_factory.mktemp("log") / "drawn.log", calls, Checker, budget, tables)


class _ReadingBlind(Checker):
    """A planted defect: the memo takes two calls that differ only in their clock
    reading for one (a get before and after a TTL ran out answers alike)."""

    def _kind(self, entry: Entry) -> int:
        return super()._kind(Entry(entry.line, entry.thread, entry.op, entry.args,
                                   entry.inv, entry.ret, 0.0, entry.result, entry.text))


class _WidensBlindly(Checker):
    """A planted defect: more calls at once than bits, and the configurations are not
    re-encoded (their state ids read with the wider shift)."""

    def _invoked(self, entry: Entry) -> None:
        frontier = self.frontier
        super()._invoked(entry)
        self.frontier = frontier


@pytest.mark.parametrize(("defect", "tables"), [(_ReadingBlind, "as is"),
                                                (_WidensBlindly, "narrow")])
def test_the_differential_tells_a_planted_defect_apart(tmp_path_factory: Any,
                                                       defect: type[Checker],
                                                       tables: str) -> None:
    @SETTINGS
    @given(calls=logs())
    def differs(calls: list[dict[str, Any]]) -> None:
        _agree(tmp_path_factory.mktemp("log") / "drawn.log", calls, defect, log.BUDGET,
               tables)

    with pytest.raises(AssertionError):
        differs()


def test_a_call_placed_early_is_not_made_again_when_it_returns_alone(tmp_path: Path
                                                                     ) -> None:
    """start('x') runs while get('x') sees x and returns first: only the order start,
    get fits, so start is placed at get's return. When start returns, alone, it must
    not be made a second time (which would answer RunAlreadyActive)."""
    state = spec.initial(POLICY)
    state, run = spec.apply(state, "start", ("x",), 1.0)
    calls = [{"op": "start", "args": ["x"], "inv": 1, "ret": 10, "now": 1.0, "t": 0,
              **_answer(run)},
             {"op": "get", "args": ["x"], "inv": 2, "ret": 5, "now": 1.0, "t": 1,
              **_answer(run)}]
    _write(tmp_path / "early.log", calls)
    for checker in (PlainChecker, Checker):
        verdict = check_log(tmp_path / "early.log", checker=checker)
        assert (verdict.verdict, verdict.calls) == ("pass", 2), log.report(verdict)
