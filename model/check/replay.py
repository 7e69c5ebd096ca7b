"""Replay a counterexample.

A program (`runbound.model.check.counterexample`, the one form `verify`, `conform` and
`runbound seeds` write) is re-run against a store, step by step, through the same machine
that found it (`runbound.model.check.minimize.run_program`).

A concurrent history (an I19 failure, a failing log's window: `NAME.history.json` of
`runbound.model.check.timeline`, or a counterexample of kind "history", whose calls as data
are in the `NAME.history.json` beside its timeline) cannot be re-run: what threads did at
once is not a program. It is replayed in the one sense it can be: its recorded calls, with
their invocation and response times, results and clock readings, are checked again
against the model by the check that found it (`linearizability.check_history` for I19, at
its frozen time; `log.Checker` for a log's window, each call at its own reading). No store
runs. A log's window that starts after calls the file does not hold is "unknown": the
model state those calls left is not recorded, and from an empty store the window would
be judged against the wrong state either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runbound.model.calls import call_text, from_json, shown
from runbound.model.check import counterexample as cx
from runbound.model.check import log, timeline
from runbound.model.check.conformance import load_factory
from runbound.model.check.linearizability import Call, check_history
from runbound.model.check.minimize import run_program
from runbound.model.check.timeline import BadHistory
from runbound.model.invariants import InvariantViolation
from runbound.model.protocol import StoreFactory

__all__ = ["BadHistory", "HistoryReplay", "NotReplayable", "history_report", "read_history",
           "replay", "replay_counterexample", "replay_file", "replay_history"]


class NotReplayable(cx.BadCounterexample):
    """A counterexample with no program and no history to check again (a probe, or a
    history whose calls as data are not at hand): nothing to replay."""


def replay(factory: StoreFactory, program: Sequence[dict[str, Any]],
           invariants: Iterable[str] | None = None,
           capabilities: Any = None) -> InvariantViolation | None:
    """The first violation of `invariants` (all by default) the program provokes in the
    store `factory` builds, or None if it runs clean."""
    return run_program(factory, program, None if invariants is None else set(invariants),
                       capabilities)


def replay_counterexample(factory: StoreFactory, found: cx.Counterexample,
                          capabilities: Any = None) -> InvariantViolation | None:
    """Replay `found`'s program, holding the store to what `found` broke (its invariant,
    or every one for an explorer's path). NotReplayable if it has no program."""
    if not found.replayable:
        raise NotReplayable(found.invariant, f"a {found.kind}, not a program: "
                                             "nothing to replay")
    return replay(factory, found.program, found.enforced(), capabilities)


def replay_file(path: Path, factory: StoreFactory | None = None,
                capabilities: Any = None) -> InvariantViolation | None:
    """Replay the counterexample in `path` against `factory` (default: the factory it
    names, `package.module:attribute`)."""
    found = cx.read(path)
    if factory is None:
        if not found.factory:
            raise cx.BadCounterexample(str(path), "names no factory: give one")
        factory = load_factory(found.factory)
    return replay_counterexample(factory, found, capabilities)


# --- histories --------------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryReplay:
    """A history checked again against the model."""

    verdict: Literal["pass", "fail", "unknown"]
    note: str
    history: timeline.History
    #: on a failure: what the check found, as verify and conform show an I19 failure
    found: cx.Counterexample | None = None


def read_history(path: Path) -> timeline.History | None:
    """The history in `path`: a `NAME.history.json`, or a counterexample of kind
    "history" (its calls taken from the `NAME.history.json` beside its timeline, which
    must be the same calls). None: a counterexample of another kind (a program).
    BadHistory, BadCounterexample (NotReplayable) for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise cx.BadCounterexample(str(path), f"not JSON: {error}") from None
    if isinstance(data, dict) and "runbound_history" in data:
        return timeline.from_json(data, str(path))
    found = cx.from_json(data, str(path))
    if found.kind != "history":
        return None
    return _beside(found, path)


def _beside(found: cx.Counterexample, path: Path) -> timeline.History:
    """The calls of a history counterexample as data: its timeline's NAME.history.json,
    as the counterexample names it, or beside the counterexample."""
    if not found.timeline:
        raise NotReplayable(found.invariant, "a history with no timeline (a defect without "
                            "a race: the counterexample holds its calls as text only): "
                            "nothing to check again")
    page = Path(found.timeline)
    name = page.name.removesuffix(".html") + ".history.json"
    places = (page.with_name(name), path.parent / name)
    for place in places:
        if place.is_file():
            history = timeline.read(place)
            if not _same(found, history):
                raise cx.BadCounterexample(str(path), f"{place} holds other calls than the "
                                                      "counterexample (written by a later "
                                                      "run?)")
            return history
    raise NotReplayable(found.invariant, f"its calls as data are in {places[0]}, which is "
                                         f"not there (nor beside {path})")


def _same(found: cx.Counterexample, history: timeline.History) -> bool:
    """The same calls (threads, times from the first invocation, culprit) and policy."""
    start = min((b.invoked for b in history.bars), default=0)
    ours = sorted((b.thread, b.invoked - start, b.returned - start, b.culprit)
                  for b in history.bars)
    theirs = sorted((c.thread, c.invoked, c.returned, c.culprit) for c in found.history)
    return ours == theirs and dict(found.policy or {}) == dict(history.policy or {})


def replay_history(history: timeline.History) -> HistoryReplay:
    """Check the history's calls again against the model (see the module docstring)."""
    policy = log.policy_from_json(dict(history.policy or {}))
    if any(not b.op for b in history.bars):
        raise BadHistory(history.source or history.title, "a call without its operation")
    if history.kind == "I19":
        return _i19(history, policy)
    return _log_window(history, policy)


def _i19(history: timeline.History, policy: Any) -> HistoryReplay:
    calls = [Call(b.thread, b.op, tuple(from_json(a) for a in b.args), b.invoked,
                  b.returned, b.outcome) for b in history.bars]
    verdict = check_history(policy, calls, history.now)
    if verdict.verdict != "fail":
        return HistoryReplay(verdict.verdict, verdict.note, history)
    shown_calls = verdict.minimal or calls
    start = min(c.invoked for c in shown_calls)
    found = cx.Counterexample(
        "I19", "history", cx.Differed(verdict.note), policy=history.policy,
        minimal=bool(verdict.minimal), history=tuple(
            cx.HistoryCall(c.thread, call_text(c.op, c.args), shown(c.result),
                           c.invoked - start, c.returned - start, c is verdict.culprit)
            for c in sorted(shown_calls, key=lambda c: c.invoked)))
    return HistoryReplay("fail", verdict.note, history, found)


def _log_window(history: timeline.History, policy: Any) -> HistoryReplay:
    if history.before:
        return HistoryReplay("unknown", f"the window starts after {history.before:,} calls "
                             "of the log the file does not hold, and the model state they "
                             "left is not recorded: the window cannot be judged alone "
                             f"(check the whole log: runbound check-log "
                             f"{history.source or 'LOG'})", history)
    lines = [b.line for b in history.bars]
    if min(lines, default=1) < 1 or len(set(lines)) != len(lines):
        raise BadHistory(history.source or history.title, "a log's calls need distinct "
                                                          "line numbers")
    entries = sorted((log.Entry(b.line, b.thread, b.op, b.args, b.invoked, b.returned, b.now,
                                b.outcome, f"line {b.line}: {b.call} -> {b.result}")
                      for b in history.bars), key=lambda e: (e.inv, e.line))
    if any(e.op == "start_cleanup_worker" and e.result is True for e in entries):
        return HistoryReplay("unknown", "a cleanup worker was started in the window, and "
                             "its sweeps are not calls: not checked", history)
    checker = log.Checker(policy)
    for thread in sorted({e.thread for e in entries}):
        checker.feed(log.Thread(0, thread, min(e.inv for e in entries if e.thread == thread)))
    for entry in entries:
        checker.feed(entry)
    verdict = checker.end()
    if verdict.verdict != "fail":
        return HistoryReplay(verdict.verdict, verdict.note, history)
    start = min(e.inv for e in verdict.window)
    found = cx.Counterexample(
        "I19", "history", cx.Differed(verdict.note), history=tuple(
            cx.HistoryCall(e.thread, call_text(e.op, e.args), shown(e.result),
                           e.inv - start, e.ret - start, e is verdict.culprit)
            for e in verdict.window))
    return HistoryReplay("fail", verdict.note, history, found)


def history_report(replayed: HistoryReplay) -> list[str]:
    """The verdict, then (a failure) the history as verify and conform render it."""
    h = replayed.history
    n = len(h.bars)
    what = (f"{n} call{'s' if n != 1 else ''} of "
            + ("an I19 history, at its frozen time" if h.kind == "I19"
               else "a log's window, each call at its clock reading"))
    out = [f"{replayed.verdict}: {what}, checked again against the model (no store runs)"]
    if replayed.found is not None:
        out.append(cx.render(replayed.found))
    elif replayed.verdict == "pass":
        out.append(f"an order of the calls fits the model ({replayed.note}): the failure "
                   "does not reproduce")
    else:
        out.append(f"not decided, never a pass: {replayed.note}")
    return out
