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
- `NAME.history.json`: the same calls as plain JSON, for tools. Not a program for
  `runbound replay`: that runs one sequential program from an empty store, where a log's
  window starts mid-history and its calls overlap.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbound.model.check.log import LogVerdict, call_text, result_text


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


@dataclass(frozen=True)
class History:
    title: str
    note: str
    bars: tuple[Bar, ...]


def from_log(verdict: LogVerdict, source: str) -> History:
    """The window around a failing log's violation."""
    return History(f"check-log: {source}", verdict.note, tuple(
        Bar(e.thread, call_text(e), result_text(e), e.inv, e.ret,
            conflict=e.line in verdict.overlapping, culprit=e is verdict.culprit,
            where=f"line {e.line}") for e in verdict.window))


def from_calls(calls: Iterable[Any], culprit: Any, title: str, note: str) -> History:
    """A history of `runbound.model.check.linearizability.Call`s; those running when the culprit
    returned (or overlapping it) are highlighted."""
    listed = sorted(calls, key=lambda c: c.invoked)
    bars = []
    for c in listed:
        op_text, _, result = c.brief().partition(": ")[2].partition(" -> ")
        overlaps = culprit is not None and c.invoked <= culprit.returned \
            and culprit.invoked <= c.returned
        bars.append(Bar(c.thread, op_text, result, c.invoked, c.returned,
                        conflict=overlaps, culprit=c is culprit))
    return History(title, note, tuple(bars))


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
    calls.write_text(json.dumps({"title": history.title, "note": history.note, "calls": [
        {"t": b.thread, "call": b.call, "result": b.result, "inv": b.invoked,
         "ret": b.returned, "where": b.where, "culprit": b.culprit,
         "conflict": b.conflict} for b in history.bars]}, indent=1) + "\n",
        encoding="utf-8")
    return [page, data, calls]

