"""One counterexample, whichever checker found it.

`verify`, `conform`, `explore` (its shortest path), `replay`, the seeds report and the
regression tests all speak this one type, with one JSON form (`to_json`, `from_json`,
versioned by `FORMAT`) and one renderer (`render`: plain text that is also markdown), so
no report is written as prose and parsed back.

A counterexample is one of three kinds:
- "program": steps of `runbound.model.calls` (the set-up first, clock steps included),
  replayable against any store (`runbound.model.check.replay`);
- "history": I19, concurrent calls (`runbound.model.check.linearizability`), cut to the
  calls that conflict; it records what threads did at once, so it is not a program;
- "probe": I11's start race and I18's hour of failing sweeps, which drive threads and a
  logger no program can; their steps are the probe's own account.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from runbound.model.calls import Step, step_text
from runbound.model.errors import RunboundError
from runbound.model.files import write_json
from runbound.model.invariants import INVARIANTS, InvariantViolation

#: the version of the JSON form: `from_json` refuses any other
FORMAT = 1
Kind = Literal["program", "history", "probe"]
KINDS: tuple[Kind, ...] = ("program", "history", "probe")


class BadCounterexample(RunboundError):
    """Data that is not a counterexample of a format this code reads (rule CX1: a
    counterexample is `to_json`'s form, format `FORMAT`). The run is "*": the file, not a
    run, is at fault."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__("*", "n/a", f"CX1: {source}: {message}")


@dataclass(frozen=True)
class Differed:
    """What the checker saw. `seen`: one line, the violation as the checker states it.
    When it was seen after a call: the call, and the model's result and the store's, as
    `runbound.model.calls.shown` shows them (the two may be equal: then the call's
    result was right and what broke is what the store retained)."""

    seen: str
    call: str = ""
    model: str = ""
    store: str = ""


@dataclass(frozen=True)
class HistoryCall:
    """One call of a concurrent history: its thread, the call and the store's result as
    shown, and when it ran, in nanoseconds from the first call's invocation."""

    thread: int
    call: str
    result: str
    invoked: int
    returned: int
    #: the call whose result no order of the calls explains (a race), or the one the
    #: model disagrees with (a defect without a race)
    culprit: bool = False


@dataclass(frozen=True)
class Counterexample:
    invariant: str
    kind: Kind
    differed: Differed
    #: kind "program": the steps, the set-up (with the policy) first
    program: tuple[Step, ...] = ()
    #: the policy, as `runbound.model.calls.policy_to_json` writes it (None: a probe,
    #: whose steps say it)
    policy: Mapping[str, Any] | None = None
    #: removing any single step (a program) or call (a history) makes it pass
    minimal: bool = False
    #: kind "history": the calls that conflict, by invocation
    history: tuple[HistoryCall, ...] = ()
    #: kind "probe": what the probe did, one line each
    steps: tuple[str, ...] = ()
    #: where a picture of it was written (I19: the timeline, HTML)
    timeline: str = ""
    #: the store's factory, `package.module:attribute`, when known (`conform`'s traces)
    factory: str = ""
    #: how `runbound.model.check.replay` holds the program to account: "invariant" (it
    #: must break `invariant`) or "any" (the explorer's paths: any violation counts)
    enforce: Literal["invariant", "any"] = "invariant"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadCounterexample(self.invariant, f"no kind {self.kind!r}")
        if self.kind == "program":
            if not self.program or self.program[0].get("op") != "setup":
                raise BadCounterexample(self.invariant, "a program begins with its set-up")
            if self.policy is None:  # the set-up holds it: one source of truth
                object.__setattr__(self, "policy", dict(self.program[0]["policy"]))

    @classmethod
    def of_program(cls, invariant: str, program: Sequence[Step], differed: Differed, *,
                   minimal: bool = False, factory: str = "",
                   enforce: Literal["invariant", "any"] = "invariant") -> Counterexample:
        steps = tuple(json.loads(json.dumps(list(program))))  # plain data, a copy
        return cls(invariant, "program", differed, steps, minimal=minimal, factory=factory,
                   enforce=enforce)

    @classmethod
    def of_violation(cls, violation: InvariantViolation, *, minimal: bool = False,
                     factory: str = "") -> Counterexample:
        """What the stateful machine raised: its program, and what it saw."""
        call, model, store = violation.call or ("", "", "")
        return cls.of_program(violation.invariant, violation.program,
                              Differed(violation.differed, call, model, store),
                              minimal=minimal, factory=factory)

    @property
    def calls(self) -> int:
        """Its length: the calls and clock steps after the set-up, the calls of a
        history, or a probe's steps."""
        if self.kind == "program":
            return len(self.program) - 1
        return len(self.history) if self.kind == "history" else len(self.steps)

    @property
    def replayable(self) -> bool:
        return self.kind == "program"

    def enforced(self) -> set[str] | None:
        """The invariants a replay checks: this one, or every one."""
        return None if self.enforce == "any" else {self.invariant}


# --- the one JSON form ----------------------------------------------------------------

def to_json(cx: Counterexample) -> dict[str, Any]:
    out: dict[str, Any] = {"runbound_counterexample": FORMAT, "invariant": cx.invariant,
                           "kind": cx.kind, "minimal": cx.minimal,
                           "differed": {k: v for k, v in vars(cx.differed).items() if v},
                           "policy": None if cx.policy is None else dict(cx.policy)}
    if cx.kind == "program":
        out["program"] = list(cx.program)
    if cx.history:
        out["history"] = [vars(c) for c in cx.history]
    if cx.steps:
        out["steps"] = list(cx.steps)
    for key in ("timeline", "factory"):
        if getattr(cx, key):
            out[key] = getattr(cx, key)
    if cx.enforce != "invariant":
        out["enforce"] = cx.enforce
    return out


def from_json(data: object, source: str = "counterexample") -> Counterexample:
    """The inverse of `to_json`; also reads the traces `runbound conform` wrote before
    the format was versioned ({"factory", "invariant", "message", "program"}).
    BadCounterexample for anything else."""
    if not isinstance(data, dict):
        raise BadCounterexample(source, f"expected a JSON object, got {type(data).__name__}")
    try:
        if "runbound_counterexample" not in data and {"invariant", "program"} <= data.keys():
            return Counterexample.of_program(  # a trace of conform before format 1
                str(data["invariant"]), data["program"],
                Differed(str(data.get("message", ""))), factory=str(data.get("factory", "")))
        if data.get("runbound_counterexample") != FORMAT:
            raise BadCounterexample(source, f"format {data.get('runbound_counterexample')!r}"
                                            f", this code reads format {FORMAT}")
        return Counterexample(
            invariant=str(data["invariant"]), kind=cast(Kind, data["kind"]),
            differed=Differed(**data["differed"]), program=tuple(data.get("program", ())),
            policy=data.get("policy"), minimal=bool(data.get("minimal", False)),
            history=tuple(HistoryCall(**c) for c in data.get("history", ())),
            steps=tuple(data.get("steps", ())), timeline=str(data.get("timeline", "")),
            factory=str(data.get("factory", "")),
            enforce=cast(Literal["invariant", "any"], data.get("enforce", "invariant")))
    except (KeyError, TypeError, AttributeError) as error:
        raise BadCounterexample(source, f"not a counterexample: {error!r}") from None


def write(cx: Counterexample, path: Path) -> Path:
    return write_json(path, to_json(cx), indent=1)


def read(path: Path) -> Counterexample:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadCounterexample(str(path), f"not JSON: {error}") from None
    return from_json(data, str(path))


# --- the one renderer -------------------------------------------------------------------

def headline(cx: Counterexample) -> str:
    """One line: the invariant, its title and what was seen."""
    title = INVARIANTS[cx.invariant].title if cx.invariant in INVARIANTS else ""
    return f"{cx.invariant} broken{f' ({title})' if title else ''}: {cx.differed.seen}"


def about(cx: Counterexample) -> str:
    """What the block below is: its kind, length and whether it is minimal."""
    if cx.kind == "program":
        n = cx.calls
        return (f"program, {n} call{'s' if n != 1 else ''} "
                f"({'1-minimal' if cx.minimal else 'not shown minimal'})")
    if cx.kind == "history":
        n = len(cx.history)
        return (f"{n} call{'s' if n != 1 else ''} of a concurrent history, cut to the "
                f"calls that conflict{' (1-minimal)' if cx.minimal else ''}")
    return f"probe, {len(cx.steps)} steps"


def lines(cx: Counterexample) -> list[str]:
    """The counterexample itself, one line each, as a person reads it: a program's
    steps (statuses by their values), then what differed, as comments; a history's calls,
    each with its place among the history's invocations and returns (1 is the first
    event: two calls overlap when their spans do); a probe's steps."""
    d = cx.differed
    if cx.kind == "program":
        out = [step_text(s) for s in cx.program]
        if d.call and d.model != d.store:
            out += [f"# {d.call}", f"#   model: {d.model}", f"#   store: {d.store}"]
        elif d.call:
            out.append(f"# seen after {d.call} (its result was the model's)")
    elif cx.kind == "history":
        out = [] if cx.policy is None else [f"# policy {_policy(cx.policy)}, clock frozen"]
        # ranks, not nanoseconds: the order of events is what tells a race, and it
        # reads the same from one run to the next where the times do not
        events = sorted({t for c in cx.history for t in (c.invoked, c.returned)})
        rank = {t: i for i, t in enumerate(events, 1)}
        width = max((len(_history_call(c)) for c in cx.history), default=0)
        for c in cx.history:
            mark = "  <- here" if c.culprit else ""
            out.append(f"{_history_call(c):<{width}}  [{rank[c.invoked]}..{rank[c.returned]}]"
                       f"{mark}")
        if d.call:
            out += [f"# {d.call}", f"#   model: {d.model}", f"#   store: {d.store}"]
    else:
        out = list(cx.steps)
    if cx.timeline:
        out.append(f"# as a timeline: {cx.timeline}")
    return out


def render(cx: Counterexample, *, markdown: bool = False, indent: str = "    ") -> str:
    """The headline, what the block is, then the block: indented for a terminal, fenced
    for markdown."""
    head = [headline(cx), f"{about(cx)}:"]
    if markdown:
        return "\n".join([*head, "", "```text", *lines(cx), "```"])
    return "\n".join([*head, *(f"{indent}{line}" for line in lines(cx))])


def _history_call(c: HistoryCall) -> str:
    return f"thread {c.thread}: {c.call} -> {c.result}"


def _policy(policy: Mapping[str, Any]) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in policy.items()
                       if v is not None and not (k == "sweep" and v == "lazy"))
    return f"Policy({fields})"
