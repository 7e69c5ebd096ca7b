"""Histories a person can read: a concurrent history (a failing log's window, an I19
failure) written three ways.

- `NAME.html`: a self-contained page (no script, no fetch): one lane per thread, each call
  a bar from its invocation to its response, the call no order can place and the calls
  running at once with it highlighted, each bar labelled with the call, its run id and its
  result. Bars are laid out by the *order* of events (each distinct time one step), as
  Porcupine's visualiser does, so a 2 us call beside a 2 ms one stays readable; the real
  times, relative to the first call, are in each bar's tooltip and in the table below.
- `NAME.porcupine.json`: the data of Porcupine's visualiser (`visualizationData` of
  anishathalye/porcupine `visualization.go`): one partition, its `History` of
  `{ClientId, Start, OriginalStart, End, OriginalEnd, Description, Metadata}` with times
  mapped to ranks times 100 as its `timestampMapping` does, no partial linearizations,
  and an annotation on the culprit. Substituted for the last `%s` of Porcupine's
  `visualization/index.html` (after its CSS and JS), it opens in its viewer.
- `NAME.history.json`: the same calls as JSON (`to_json`, format `FORMAT`), each with its
  operation, arguments, result or error and clock reading, with the policy (and an I19
  history's frozen time): enough for `runbound replay` to check the calls again against
  the model (`runbound.model.check.replay.replay_history`; no store runs). A log's window
  says how many calls of the log were checked before it (`before`): the model state
  those calls left is not in the file, so such a window replays as "unknown".
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runbound.model import spec
from runbound.model.calls import (
    ERRORS,
    call_text,
    error_from_json,
    policy_to_json,
    result_from_json,
    result_to_json,
    shown,
)
from runbound.model.calls import to_json as arg_to_json
from runbound.model.check import log
from runbound.model.check.linearizability import STRESS_POLICY
from runbound.model.check.log import LogVerdict, result_text
from runbound.model.clock import VirtualClock
from runbound.model.errors import RunboundError
from runbound.model.policy import Policy

#: the version of NAME.history.json: `from_json` refuses any other
FORMAT = 1


class BadHistory(RunboundError):
    """A file that is not a history `write` wrote (format `FORMAT`). The run is "*": the
    file, not a run, is at fault."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__("*", "n/a", f"{source}: {message}")


@dataclass(frozen=True)
class Bar:
    thread: int
    call: str      # "start('a')"
    result: str    # "Run('a', 'pending')"
    invoked: int   # ns, any origin
    returned: int
    #: ran at once with the culprit; the culprit: the call no order can place
    conflict: bool = False
    culprit: bool = False
    where: str = ""  # "line 12" for a log
    #: the call as data, for a replay: the operation, its arguments as JSON (as a log
    #: writes them), the result or the exception, and (a log's) clock reading
    op: str = ""
    args: tuple[Any, ...] = ()
    outcome: object = None
    now: float = math.nan
    line: int = 0  # a log's line


@dataclass(frozen=True)
class History:
    title: str
    note: str
    bars: tuple[Bar, ...]
    #: "I19": calls at one frozen time `now`, judged from an empty store; "log": a
    #: log's window, each call at its own reading
    kind: Literal["I19", "log"] = "I19"
    policy: Mapping[str, Any] | None = None  # as `policy_to_json` writes it
    now: float = math.nan
    #: a log's calls checked before the window (0: the window is the log from its
    #: start, so the model state before it is the empty store's)
    before: int = 0
    source: str = ""


def from_log(verdict: LogVerdict, source: str) -> History:
    """The window around a failing log's violation. The window holds the calls running
    at once with the culprit and the last ones placed before it; `before` counts the
    placed calls it leaves out."""
    placed = len(verdict.window) - len(verdict.overlapping)
    return History(f"check-log: {source}", verdict.note, tuple(
        Bar(e.thread, log.call_text(e), result_text(e), e.inv, e.ret,
            conflict=e.line in verdict.overlapping, culprit=e is verdict.culprit,
            where=f"line {e.line}", op=e.op, args=e.args, outcome=e.result, now=e.now,
            line=e.line) for e in verdict.window),
        kind="log", policy=verdict.header.get("policy"),
        before=max(verdict.calls - placed, 0), source=source)


def from_calls(calls: Iterable[Any], culprit: Any, title: str, note: str, *,
               policy: Policy | None = None, now: float | None = None) -> History:
    """A history of `runbound.model.check.linearizability.Call`s; those running when the
    culprit returned (or overlapping it) are highlighted. `policy` and `now`, the frozen
    time the calls ran at: by default `linearizability.stress`'s (its `STRESS_POLICY`, a
    fresh `VirtualClock`'s reading), which is where verify's I19 histories come from."""
    listed = sorted(calls, key=lambda c: c.invoked)
    bars = []
    for c in listed:
        op_text, _, result = c.brief().partition(": ")[2].partition(" -> ")
        overlaps = culprit is not None and c.invoked <= culprit.returned \
            and culprit.invoked <= c.returned
        bars.append(Bar(c.thread, op_text, result, c.invoked, c.returned,
                        conflict=overlaps, culprit=c is culprit, op=c.op,
                        args=tuple(arg_to_json(a) for a in c.args), outcome=c.result))
    return History(title, note, tuple(bars), kind="I19",
                   policy=policy_to_json(policy or STRESS_POLICY),
                   now=VirtualClock()() if now is None else now)


# --- the page -------------------------------------------------------------------------

STEP = 130     # px per distinct event time: room for a label
LANE = 58      # px per thread
LEFT = 96      # px for the lane names

_CSS = """
body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
p.note { margin: 0 0 12px; max-width: 1100px; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 8px; border-radius: 3px; }
.timeline { position: relative; overflow-x: auto; border-top: 1px solid #ccc; }
.lane { position: absolute; left: 0; height: LANEpx; border-bottom: 1px solid #eee; }
.lane-name { position: absolute; left: 4px; font-weight: 600; line-height: LANEpx; }
.bar { position: absolute; height: 40px; box-sizing: border-box; border-radius: 4px;
       padding: 2px 5px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis;
       font-size: 12px; line-height: 18px; }
.ok { background: #dde8f6; border: 1px solid #7a9cc6; }
.conflict { background: #ffe3b3; border: 2px solid #d08a00; }
.culprit { background: #ffc4c4; border: 3px solid #c00000; font-weight: 600; }
.bar .result { color: #444; }
table { border-collapse: collapse; margin-top: 16px; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
tr.culprit td { background: #ffc4c4; } tr.conflict td { background: #ffe3b3; }
""".replace("LANE", str(LANE))


def _ago(ns: int) -> str:
    """A time relative to the window's start, in the unit that reads best."""
    if ns < 1_000:
        return f"+{ns} ns"
    if ns < 1_000_000:
        return f"+{ns / 1e3:.1f} us"
    if ns < 1_000_000_000:
        return f"+{ns / 1e6:.3f} ms"
    return f"+{ns / 1e9:.3f} s"


def _ranks(bars: Sequence[Bar]) -> dict[int, int]:
    times = sorted({t for b in bars for t in (b.invoked, b.returned)})
    return {t: i for i, t in enumerate(times)}


def render_html(history: History) -> str:
    bars = history.bars
    rank = _ranks(bars)
    origin = min((b.invoked for b in bars), default=0)
    threads = sorted({b.thread for b in bars})
    lane = {t: i for i, t in enumerate(threads)}
    width = LEFT + STEP * (len(rank) + 1) + 200
    out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
           f"<title>{html.escape(history.title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(history.title)}</h1>",
           f"<p class='note'>{html.escape(history.note)}</p>",
           "<p class='legend'><span class='culprit'>no order can place this call</span>"
           "<span class='conflict'>running at once with it</span>"
           "<span class='ok'>other calls</span> bars in event order; times in the "
           "tooltips and the table</p>",
           f"<div class='timeline' style='height:{LANE * len(threads) + 24}px'>"]
    for t in threads:
        out.append(f"<div class='lane' id='lane-{t}' style='top:{lane[t] * LANE}px;"
                   f"width:{width}px'><span class='lane-name'>thread {t}</span></div>")
    for b in bars:
        kind = "culprit" if b.culprit else "conflict" if b.conflict else "ok"
        left = LEFT + STEP * rank[b.invoked]
        span = max(STEP * (rank[b.returned] - rank[b.invoked]), STEP) - 4
        tip = (f"{b.where + ': ' if b.where else ''}thread {b.thread}: {b.call} -> "
               f"{b.result}, {_ago(b.invoked - origin)} .. {_ago(b.returned - origin)}")
        out.append(f"<div class='bar {kind}' data-thread='{b.thread}' style='left:{left}px;"
                   f"top:{lane[b.thread] * LANE + 8}px;width:{span}px' "
                   f"title='{html.escape(tip, quote=True)}'>{html.escape(b.call)}<br>"
                   f"<span class='result'>&rarr; {html.escape(b.result)}</span></div>")
    out.append("</div><table><tr><th></th><th>thread</th><th>call</th><th>result</th>"
               "<th>invoked</th><th>returned</th><th>where</th></tr>")
    for b in bars:
        kind = "culprit" if b.culprit else "conflict" if b.conflict else ""
        mark = "!" if b.culprit else "*" if b.conflict else ""
        out.append(f"<tr class='{kind}'><td>{mark}</td><td>{b.thread}</td>"
                   f"<td>{html.escape(b.call)}</td><td>{html.escape(b.result)}</td>"
                   f"<td>{_ago(b.invoked - origin)}</td><td>{_ago(b.returned - origin)}</td>"
                   f"<td>{html.escape(b.where)}</td></tr>")
    out.append("</table></body></html>\n")
    return "\n".join(out)


def porcupine(history: History) -> dict[str, Any]:
    """Porcupine's `visualizationData` for the history (see the module docstring)."""
    rank = _ranks(history.bars)
    items = [{"ClientId": b.thread, "Start": rank[b.invoked] * 100,
              "OriginalStart": str(b.invoked), "End": rank[b.returned] * 100,
              "OriginalEnd": str(b.returned), "Description": f"{b.call} -> {b.result}",
              "Metadata": b.where} for b in history.bars]
    notes = [{"ClientId": b.thread, "Tag": "", "Start": rank[b.invoked] * 100,
              "End": rank[b.returned] * 100, "Description": "cannot be placed",
              "Details": history.note, "Annotation": True, "TextColor": "",
              "BackgroundColor": "#ffc4c4"} for b in history.bars if b.culprit]
    return {"Partitions": [{"History": items, "PartialLinearizations": [],
                            "Largest": {}}],
            "Annotations": notes}


def write(history: History, directory: str | Path, name: str) -> list[Path]:
    """Write NAME.html, NAME.porcupine.json and NAME.history.json in `directory`."""
    where = Path(directory)
    where.mkdir(parents=True, exist_ok=True)
    page = where / f"{name}.html"
    page.write_text(render_html(history), encoding="utf-8")
    data = where / f"{name}.porcupine.json"
    data.write_text(json.dumps(porcupine(history)) + "\n", encoding="utf-8")
    calls = where / f"{name}.history.json"
    calls.write_text(json.dumps(to_json(history), indent=1, default=repr) + "\n",
                     encoding="utf-8")
    return [page, data, calls]


# --- NAME.history.json ----------------------------------------------------------------

def outcome_to_json(outcome: object) -> dict[str, Any]:
    """A call's result as a log line holds it: {"ok": result} or {"err": {class,
    message}} (any exception: a store's crash is named by its class too)."""
    if isinstance(outcome, BaseException):
        return {"err": {"class": type(outcome).__name__, "message": str(outcome)}}
    return {"ok": result_to_json(outcome)}


def outcome_from_json(call: Mapping[str, Any]) -> object:
    """The inverse of `outcome_to_json`. An error class the model does not name (a
    store's crash) comes back as an exception of that name: no model result equals it,
    as none equalled the original."""
    if "err" not in call:
        return result_from_json(call["ok"])
    err = call["err"]
    if err["class"] in ERRORS:
        return error_from_json(err)
    crash: type[Exception] = type(str(err["class"]), (Exception,), {})
    return crash(str(err.get("message", "")))


def to_json(history: History) -> dict[str, Any]:
    out: dict[str, Any] = {"runbound_history": FORMAT, "kind": history.kind,
                           "title": history.title, "note": history.note,
                           "source": history.source, "policy": history.policy,
                           "before": history.before}
    if not math.isnan(history.now):
        out["now"] = history.now
    out["calls"] = []
    for b in history.bars:
        call: dict[str, Any] = {
            "t": b.thread, "call": b.call, "result": b.result, "inv": b.invoked,
            "ret": b.returned, "where": b.where, "culprit": b.culprit,
            "conflict": b.conflict, "op": b.op, "args": list(b.args),
            **outcome_to_json(b.outcome)}
        if b.line:
            call["line"] = b.line
        if not math.isnan(b.now):  # no reading: the store did not read its clock
            call["now"] = b.now
        out["calls"].append(call)
    return out


def from_json(data: object, source: str = "history") -> History:
    """The inverse of `to_json`; BadHistory for anything else (a history written before
    format 1 has no operations to replay)."""
    if not isinstance(data, dict):
        raise BadHistory(source, f"expected a JSON object, got {type(data).__name__}")
    if data.get("runbound_history") != FORMAT:
        raise BadHistory(source, f"format {data.get('runbound_history')!r}, this code reads "
                                 f"format {FORMAT} (a history written before format 1 "
                                 "holds no calls to replay: write it again)")
    try:
        kind = data["kind"]
        if kind not in ("I19", "log"):
            raise ValueError(f"no kind {kind!r}")
        policy = data["policy"]
        log.policy_from_json(policy)  # refused here, not halfway through a replay
        bars = []
        for c in data["calls"]:
            op, inv, ret = c["op"], c["inv"], c["ret"]
            if op not in spec.OPERATIONS:
                raise ValueError(f"no operation {op!r}")
            if not (isinstance(inv, int) and isinstance(ret, int) and inv <= ret):
                raise ValueError(f"inv {inv!r} and ret {ret!r} must be integers, inv <= ret")
            if not isinstance(c["args"], list) or not isinstance(c["t"], int):
                raise ValueError("args must be a list, t an integer")
            outcome = outcome_from_json(c)
            bars.append(Bar(c["t"], str(c.get("call", call_text(op, c["args"]))),
                            str(c.get("result", shown(outcome))), inv, ret,
                            bool(c.get("conflict", False)), bool(c.get("culprit", False)),
                            str(c.get("where", "")), op, tuple(c["args"]), outcome,
                            float(c.get("now", math.nan)), int(c.get("line", 0))))
        now = float(data["now"]) if kind == "I19" else math.nan
        return History(str(data.get("title", "")), str(data.get("note", "")), tuple(bars),
                       kind=kind, policy=policy, now=now, before=int(data.get("before", 0)),
                       source=str(data.get("source", "")))
    except (KeyError, TypeError, ValueError, AttributeError, RunboundError) as error:
        raise BadHistory(source, f"not a history: {type(error).__name__}: {error}"
                         ) from None


def read(path: Path) -> History:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadHistory(str(path), f"not JSON: {error}") from None
    return from_json(data, str(path))

