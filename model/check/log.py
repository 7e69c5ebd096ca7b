"""`runbound check-log LOG`: a recorded log (specs/log.md) held to the model.

The log is read once, streaming. Calls are taken in the order of their return events;
a call is checked when every call invoked before it returned is known (each thread's
calls are sequential and its lines come in its order, so that is once every thread has a
line invoked later, or the log has ended). Memory holds those calls only, up to
`MAX_BUFFER`; past that the checker goes on as if no older call were still running, and a
line that shows one was is "unknown" from there, never a pass.

Why not `runbound.model.check.linearizability.check_history` window by window: it searches from an
empty store at one frozen `now`, where a log needs each call's own clock reading and the
state the calls before the window left. So this module keeps, instead, the frontier of a
just-in-time linearization (Lowe, "Testing for linearizability", 2017): every
configuration (model state, calls still running that are already placed) some order of
the calls so far can reach. At each return the configurations are extended by placing
running calls, the returning one last, each only where the model gives the result the
store gave (`spec.apply` at the call's own reading, `stateful.same_result`). No
configuration left: no order of the calls so far fits the model, and the call that
returned is the violation. A sequential stretch (one call running at a time) is a plain
replay, one `apply` per call.

There is no split per run id: every call's effective time is the highest clock reading
any earlier call made (rule C1), which couples all runs once times are real readings
(`linearizability.partition` is sound because its time is frozen).
"""

from __future__ import annotations

import heapq
import json
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from runbound.model import spec
from runbound.model.calls import error_from_json, result_from_json, same_result
from runbound.model.check.linsearch import answer
from runbound.model.errors import RunboundError
from runbound.model.policy import Policy, SweepMode
from runbound.model.records import Page, Run

#: the log format's version (the header's `runbound_log`)
FORMAT = 1

#: calls held in memory, waiting for older ones to be known
MAX_BUFFER = 20_000
#: configurations and placements tried at one return before the verdict is "unknown"
BUDGET = 200_000
#: calls on either side of the violation in the report
CONTEXT = 12


class LogError(RunboundError):
    """A log that is not of the format: the message names the line and what is wrong."""

    def __init__(self, line: int, rule: str) -> None:
        super().__init__("*", f"line {line}", rule)
        self.line = line


@dataclass(frozen=True, slots=True, eq=False)
class Entry:
    """One call of the log."""

    line: int
    thread: int
    op: str
    args: tuple[Any, ...]
    inv: int
    ret: int
    now: float
    result: object
    #: the line as written, for the reports
    text: str


@dataclass
class LogVerdict:
    verdict: Literal["pass", "fail", "unknown"]
    calls: int = 0
    note: str = ""
    #: on a failure: the call no order can place, and the calls around it (by
    #: invocation), those running at once with it among them
    culprit: Entry | None = None
    window: list[Entry] = field(default_factory=list)
    overlapping: list[int] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    #: the largest number of calls running at once, and of configurations kept
    max_running: int = 0
    max_configurations: int = 0


# --- reading --------------------------------------------------------------------------

def policy_from_json(data: dict[str, Any]) -> Policy:
    fields = dict(data)
    if "sweep" in fields:
        fields["sweep"] = SweepMode(fields["sweep"])
    return Policy(**fields)


@dataclass(frozen=True, slots=True)
class Thread:
    """A thread line: `thread` makes no call invoked before `at`."""

    line: int
    thread: int
    at: int


def read_log(path: str | Path) -> tuple[dict[str, Any], Iterator[Entry | Thread]]:
    """The header, and the calls as they come (read lazily)."""
    handle = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the iterator)
    first = handle.readline()
    try:
        header = json.loads(first)
        if not isinstance(header, dict) or header.get("runbound_log") != FORMAT:
            raise ValueError(f"not a runbound log of format {FORMAT}")
        policy_from_json(header["policy"])
    except (ValueError, KeyError, TypeError, RunboundError) as error:
        handle.close()
        raise LogError(1, f"LOG1: the header is not of the format: {error}") from None
    if header.get("clock_readings") is not True:
        handle.close()
        raise LogError(1, "LOG3: the log carries no clock readings (`clock_readings`); "
                          "TTLs and leases cannot be checked without them")

    def entries() -> Iterator[Entry | Thread]:
        threads: set[int] = set()
        with handle:
            for number, text in enumerate(handle, start=2):
                if not text.endswith("\n"):
                    raise LogError(number, "LOG2: the line is cut short (a truncated log)")
                if text.startswith('{"thread"'):
                    thread = parse_thread(number, text)
                    threads.add(thread.thread)
                    yield thread
                    continue
                entry = parse_line(number, text)
                if entry.thread not in threads:
                    raise LogError(number, f"LOG4: a call of thread {entry.thread}, which "
                                   "no thread line before it announced")
                yield entry
    return header, entries()


def parse_thread(number: int, text: str) -> Thread:
    try:
        data = json.loads(text)
        thread, at = data["thread"], data["at"]
        if not (isinstance(thread, int) and isinstance(at, int)):
            raise ValueError("thread and at must be integers")
    except (ValueError, KeyError, TypeError) as error:
        raise LogError(number, f"LOG2: the thread line is not of the format ({error})"
                       ) from None
    return Thread(number, thread, at)


def parse_line(number: int, text: str) -> Entry:
    try:
        data = json.loads(text)
        op = data["op"]
        if op not in spec.OPERATIONS:
            raise ValueError(f"no operation {op!r}")
        inv, ret = data["inv"], data["ret"]
        if not (isinstance(inv, int) and isinstance(ret, int) and inv <= ret):
            raise ValueError(f"inv {inv!r} and ret {ret!r} must be integers, inv <= ret")
        thread = data["t"]
        if not isinstance(thread, int):
            raise ValueError(f"thread {thread!r} is not an integer")
        result: object = (error_from_json(data["err"]) if "err" in data
                          else result_from_json(data["ok"]))
        now = data.get("now", math.nan)  # no reading: the store did not read its clock
        args = data["args"]
        if not isinstance(args, list):
            raise ValueError("args must be a list")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        detail = "not JSON" if isinstance(error, json.JSONDecodeError) else \
            f"{type(error).__name__}: {error}"
        raise LogError(number, f"LOG2: the line is not a call of the format ({detail})"
                       ) from None
    return Entry(number, thread, op, tuple(args), inv, ret, now, result, text.rstrip("\n"))


# --- checking -------------------------------------------------------------------------

Configuration = tuple[spec.ModelState, frozenset[int]]


class PlainChecker:
    """The frontier (see the module docstring), fed one call at a time by `feed`: the
    plain search, one `spec.apply` per placement, configurations as (state, lines placed).
    The oracle of `Checker`, which must give the same verdict on every log (a
    differential test holds them to it)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.configs: list[Configuration] = [(spec.initial(policy), frozenset())]
        self.by_inv: list[tuple[int, int, Entry]] = []  # read, not yet invoked
        self.by_ret: list[tuple[int, int, Entry]] = []  # read, not yet returned
        self.running: dict[int, Entry] = {}            # invoked, not yet returned
        self.latest: dict[int, int] = {}               # thread -> its latest invocation
        self.done = -1      # the time up to which events are processed
        self.forced = False  # past MAX_BUFFER: events processed without every older call
        self.recent: deque[Entry] = deque(maxlen=CONTEXT)
        self.calls = 0
        self.verdict: LogVerdict | None = None
        self.max_running = self.max_configs = 0
        #: a store's cursor -> the page's last run (id, created_at): the model's position
        self.cursors: dict[str, tuple[str, float]] = {}

    def feed(self, entry: Entry | Thread) -> None:
        if self.verdict is not None:
            return
        if isinstance(entry, Thread):
            if entry.thread in self.latest:
                raise LogError(entry.line, f"LOG4: thread {entry.thread} announced twice")
            self.latest[entry.thread] = entry.at
            return
        if entry.inv <= self.done:  # only ever after a forced step: see MAX_BUFFER
            self.verdict = LogVerdict(
                "unknown", self.calls, f"line {entry.line}: a call invoked before calls "
                f"already checked (more than {MAX_BUFFER:,} calls returned while it ran); "
                "the rest of the log is not checked")
            return
        heapq.heappush(self.by_inv, (entry.inv, entry.line, entry))
        heapq.heappush(self.by_ret, (entry.ret, entry.line, entry))
        self.latest[entry.thread] = entry.inv
        horizon = min(self.latest.values())
        while self.by_ret and self.verdict is None:
            if self.by_ret[0][0] <= horizon:
                self._return(heapq.heappop(self.by_ret)[2])
            elif len(self.by_ret) > MAX_BUFFER:
                self.forced = True
                self._return(heapq.heappop(self.by_ret)[2])
            else:
                break

    def end(self) -> LogVerdict:
        while self.by_ret and self.verdict is None:
            self._return(heapq.heappop(self.by_ret)[2])
        verdict = self.verdict or LogVerdict("pass", self.calls,
                                             "an order of every call fits the model")
        verdict.calls, verdict.max_running = self.calls, self.max_running
        verdict.max_configurations = self.max_configs
        return verdict

    def _return(self, call: Entry) -> None:
        while self.by_inv and self.by_inv[0][0] <= call.ret:
            entry = heapq.heappop(self.by_inv)[2]
            self.running[entry.line] = entry
            self._invoked(entry)
        self.done = call.ret
        self.max_running = max(self.max_running, len(self.running))
        found = self._place(call)
        if found is None:
            self.verdict = LogVerdict("unknown", self.calls, f"line {call.line}: more than "
                                      f"{BUDGET:,} placements tried at one return; the "
                                      "rest of the log is not checked")
            return
        if not found:
            self._fail(call)
            return
        self.max_configs = max(self.max_configs, found)
        del self.running[call.line]
        self._returned(call)
        self.recent.append(call)
        self.calls += 1
        self._remember_cursor(call)

    def _invoked(self, entry: Entry) -> None:
        """`entry` has just joined the running calls."""

    def _returned(self, entry: Entry) -> None:
        """`entry` has just left the running calls, placed."""

    def _states(self) -> list[spec.ModelState]:
        """The model state of each configuration."""
        return [state for state, _ in self.configs]

    def _place(self, call: Entry) -> int | None:
        """Make the configurations every one reachable with `call` placed, then dropped
        from the running set; their number (0: none), or None over budget."""
        state, placed = self.configs[0]
        if len(self.running) == 1 and len(self.configs) == 1 and not placed:
            new, result = self._apply(state, call)  # a sequential stretch
            if not same_result(result, call.result):
                return 0
            self.configs = [(new, frozenset())]
            return 1
        out: dict[Configuration, None] = {}
        seen: set[Configuration] = set()
        stack = list(self.configs)
        tried = 0
        while stack:
            config = stack.pop()
            if config in seen:
                continue
            seen.add(config)
            state, placed = config
            if call.line in placed:
                out[(state, placed - {call.line})] = None
                continue
            for line, other in self.running.items():
                if line in placed:
                    continue
                tried += 1
                if tried > BUDGET:
                    return None
                new, result = self._apply(state, other)
                if same_result(result, other.result):
                    stack.append((new, placed | {line}))
        if out:
            self.configs = list(out)
        return len(out)

    def _apply(self, state: spec.ModelState, call: Entry) -> tuple[spec.ModelState, object]:
        args = call.args
        if call.op == "list_runs" and len(args) > 2 and isinstance(args[2], str):
            args = (*args[:2], self._model_cursor(state, args[2]))
        return spec.apply(state, call.op, args, call.now)

    def _model_cursor(self, state: spec.ModelState, cursor: str) -> object:
        """The model's cursor for a store's: the position of the issuing page's last run
        (a cursor is a position in start order, specs/lifecycle.md L3). A cursor no page
        issued is passed as it is: the model refuses what is not of its form."""
        last = self.cursors.get(cursor)
        if last is None:
            return cursor
        for run in state.runs:
            if (run.run_id, run.created_at) == last:
                return str(run.seq)
        # the run is gone: the position is that of the first run started after it
        later = [r.seq for r in state.runs if r.created_at > last[1]]
        return str(min(later)) if later else str(state.next_seq)

    def _remember_cursor(self, call: Entry) -> None:
        page = call.result
        if isinstance(page, Page) and page.next_cursor is not None and page.runs:
            if len(self.cursors) >= MAX_BUFFER:
                self.cursors.pop(next(iter(self.cursors)))
            last: Run = page.runs[-1]
            self.cursors[page.next_cursor] = (last.run_id, last.created_at)

    def _fail(self, call: Entry) -> None:
        running = sorted(self.running.values(), key=lambda e: e.inv)
        window = sorted({*self.recent, *running}, key=lambda e: (e.inv, e.line))
        overlapping = [e.line for e in running]
        expected = self._expected(call)
        self.verdict = LogVerdict(
            "fail", self.calls, f"line {call.line}: no order of the calls so far gives "
            f"{_brief(call)}; {expected}", culprit=call, window=window,
            overlapping=overlapping)

    def _expected(self, call: Entry) -> str:
        """What the model gives instead, placing the call after the others (one order)."""
        answers = sorted({_show(self._apply(state, call)[1]) for state in self._states()})
        return f"the model gives {' or '.join(answers)} there"


#: model states (and kinds, answers) held before the tables are compacted to the frontier's
STATES_HELD = 20_000
#: the bits of a configuration for its calls placed, at first (doubled when more calls
#: run at once)
FIRST_SHIFT = 16


class _Slot(NamedTuple):
    """A running call as the fast frontier needs it."""

    bit: int     # its bit in a configuration's set of calls placed
    kind: int    # its (operation, arguments, reading) interned; -1: not memoised
    want: int    # its answer interned (linsearch.answer): a model answer fits iff equal
    entry: Entry
    #: kind and want are set (only once calls overlap: a sequential stretch needs neither)
    ready: bool = False


class Checker(PlainChecker):
    """The plain checker's frontier, made cheap (the same verdict on every log:
    `PlainChecker` is its oracle):

    - model states are interned to ints, and the model step is memoised, as
      `linsearch` does: (state id, call kind) -> (next state id, answer id), a call's kind
      its (operation, arguments, reading) interned, answers compared by interned id
      (`linsearch.answer`: equal iff `same_result` holds). A step that returns its state
      unchanged (a read, a refusal) costs no hashing at all;
    - a configuration is one int, `state id << shift | calls placed`, each running call
      a bit (slots are reused as calls return), so the configurations are deduplicated by
      (state, calls placed) as the plain checker's are, by state equality;
    - a sequential stretch makes no memo entry and hashes no state: its state gets a
      fresh id ("loose"), interned only if calls overlap again (so that equal states
      still share one id there, and the configurations are exactly the plain ones);
    - memory stays bounded: past `STATES_HELD` states the tables are rebuilt from the
      frontier alone (the memo is a cache: dropping it changes no verdict).

    A listing that passes a store's cursor is never memoised: its model cursor depends
    on the pages seen so far (`_model_cursor`)."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        first = spec.initial(policy)
        self.states: list[spec.ModelState] = [first]
        self.ids: dict[spec.ModelState, int] = {first: 0}
        self.loose: set[int] = set()  # state ids not in `ids`
        self.memo: dict[int, dict[int, tuple[int, int]]] = {}  # state -> kind -> step
        self.kinds: dict[Hashable, int] = {}
        self.answers: dict[Hashable, int] = {}
        self.slots: dict[int, _Slot] = {}  # line -> its slot, in invocation order
        self.free: list[int] = []  # slot numbers given back
        self.shift = FIRST_SHIFT  # bits of a configuration below its state id
        self.frontier: list[int] = [0]

    # --- interning

    def _kind(self, entry: Entry) -> int:
        args = entry.args
        if entry.op == "list_runs" and len(args) > 2 and isinstance(args[2], str):
            return -1
        # the types too: (1,) == (True,) == (1.0,), which the model tells apart
        key = (entry.op, args, tuple(map(type, args)), entry.now, type(entry.now))
        try:
            return self.kinds.setdefault(key, len(self.kinds))
        except TypeError:  # an unhashable argument: never memoised
            return -1

    def _answer(self, result: object, unique: int) -> int:
        try:
            return self.answers.setdefault(answer(result), len(self.answers))
        except TypeError:  # unhashable: no other answer equals it
            return unique

    def _invoked(self, entry: Entry) -> None:
        number = self.free.pop() if self.free else len(self.slots)
        if number >= self.shift:  # more calls at once than bits: widen every config
            wider = self.shift * 2
            mask = (1 << self.shift) - 1
            self.frontier = [(c >> self.shift) << wider | (c & mask) for c in self.frontier]
            self.shift = wider
        self.slots[entry.line] = _Slot(1 << number, -1, -1, entry)

    def _ready(self) -> None:
        """Intern the kind and the answer of every running call that lacks them."""
        for line, slot in self.slots.items():
            if not slot.ready:
                self.slots[line] = slot._replace(
                    kind=self._kind(slot.entry),
                    want=self._answer(slot.entry.result, -2 - slot.entry.line), ready=True)

    def _returned(self, entry: Entry) -> None:
        self.free.append(self.slots.pop(entry.line).bit.bit_length() - 1)
        if len(self.states) > STATES_HELD or len(self.kinds) > STATES_HELD \
                or len(self.answers) > STATES_HELD:
            self._compact()

    def _states(self) -> list[spec.ModelState]:
        return [self.states[c >> self.shift] for c in self.frontier]

    def _compact(self) -> None:
        """Keep the frontier's states only (renumbered), and start the memo, the kinds
        and the answers afresh."""
        mask = (1 << self.shift) - 1
        states: list[spec.ModelState] = []
        ids: dict[spec.ModelState, int] = {}
        loose: set[int] = set()
        renumber: dict[int, int] = {}
        frontier = []
        for c in self.frontier:
            sid = c >> self.shift
            if sid not in renumber:
                renumber[sid] = len(states)
                states.append(self.states[sid])
                if sid in self.loose:
                    loose.add(renumber[sid])
                else:
                    ids[self.states[sid]] = renumber[sid]
            frontier.append(renumber[sid] << self.shift | (c & mask))
        self.states, self.ids, self.loose, self.frontier = states, ids, loose, frontier
        self.memo, self.kinds, self.answers = {}, {}, {}
        for line, slot in self.slots.items():
            self.slots[line] = slot._replace(ready=False)

    def _intern(self, state: spec.ModelState) -> int:
        sid = self.ids.get(state)
        if sid is None:
            sid = self.ids[state] = len(self.states)
            self.states.append(state)
        return sid

    def _canonical(self) -> None:
        """Give the frontier's loose states their interned ids (calls overlap again)."""
        mask = (1 << self.shift) - 1
        frontier: dict[int, None] = {}
        for c in self.frontier:
            sid = c >> self.shift
            if sid in self.loose:
                self.loose.discard(sid)
                state = self.states[sid]
                sid = self.ids.setdefault(state, sid)
            frontier[sid << self.shift | (c & mask)] = None
        self.frontier = list(frontier)

    # --- the search

    def _step(self, sid: int, slot: _Slot, row: dict[int, tuple[int, int]]
              ) -> tuple[int, int]:
        """The model step from state `sid` by the slot's call: (next state id, answer id),
        memoised in the state's `row` by the call's kind."""
        state = self.states[sid]
        new, result = self._apply(state, slot.entry)
        if isinstance(result, BaseException):  # its traceback's frames would hold the
            result.__traceback__ = None        # states: a cycle, left to the collector
        hit = (sid if new is state else self._intern(new),
               self._answer(result, -1))
        if slot.kind >= 0:
            row[slot.kind] = hit
        return hit

    def _place(self, call: Entry) -> int | None:
        shift = self.shift
        mask = (1 << shift) - 1
        if len(self.slots) == 1 and len(self.frontier) == 1 and not self.frontier[0] & mask:
            state = self.states[self.frontier[0] >> shift]  # a sequential stretch
            new, result = self._apply(state, call)
            if not same_result(result, call.result):
                return 0
            if new is not state:
                self.loose.add(len(self.states))
                self.frontier = [len(self.states) << shift]
                self.states.append(new)
            return 1
        self._canonical()
        self._ready()
        own = self.slots[call.line].bit
        running = [(slot.bit, slot.kind, slot.want, slot) for slot in self.slots.values()]
        memo, step = self.memo, self._step
        out: dict[int, None] = {}
        seen = set(self.frontier)
        stack = list(self.frontier)
        tried = 0
        while stack:
            config = stack.pop()
            if config & own:
                out[config ^ own] = None
                continue
            sid, placed = config >> shift, config & mask
            row = memo.get(sid)
            if row is None:
                row = memo[sid] = {}
            for bit, kind, want, slot in running:
                if placed & bit:
                    continue
                tried += 1
                if tried > BUDGET:
                    return None
                hit = row.get(kind)  # never a kind of -1: those are not memoised
                if hit is None:
                    hit = step(sid, slot, row)
                if hit[1] == want:
                    reached = hit[0] << shift | placed | bit
                    if reached not in seen:
                        seen.add(reached)
                        stack.append(reached)
        if out:
            self.frontier = list(out)
        return len(out)


def check_log(path: str | Path, progress: Callable[[int], None] | None = None, *,
              checker: Callable[[Policy], PlainChecker] | None = None) -> LogVerdict:
    """Check the log at `path` (LogError if it is not of the format). `progress(read)`
    is called now and then with about how many bytes have been read (JSON written with
    ASCII escapes: exactly). `checker`: another than `Checker` (its oracle,
    `PlainChecker`)."""
    header, entries = read_log(path)
    check = (checker or Checker)(policy_from_json(header["policy"]))
    read = 0
    for n, entry in enumerate(entries):
        if isinstance(entry, Thread):
            check.feed(entry)
            continue
        read += len(entry.text) + 1
        if entry.op == "start_cleanup_worker" and entry.result is True:
            check.feed(entry)
            check.end()
            if check.verdict is None:
                check.verdict = LogVerdict(
                    "unknown", check.calls, f"line {entry.line}: a cleanup worker was "
                    "started, and its sweeps are not calls of the log; the rest of the "
                    "log is not checked")
            break
        check.feed(entry)
        if check.verdict is not None:
            break
        if progress is not None and n % 4096 == 0:
            progress(read)
    verdict = check.end()
    verdict.header = header
    return verdict


# --- text -----------------------------------------------------------------------------

def _show(value: object) -> str:
    if isinstance(value, RunboundError):
        return type(value).__name__
    if isinstance(value, Run):
        return f"Run({value.run_id!r}, {value.status.value!r})"
    if isinstance(value, Page):
        return (f"Page([{', '.join(_show(r) for r in value.runs)}], "
                f"next={value.next_cursor is not None})")
    return repr(value)


def call_text(entry: Entry) -> str:
    return f"{entry.op}({', '.join(repr(a) for a in entry.args)})"


def _brief(entry: Entry) -> str:
    return f"thread {entry.thread}: {call_text(entry)} -> {_show(entry.result)}"


def result_text(entry: Entry) -> str:
    return _show(entry.result)


def report(verdict: LogVerdict) -> list[str]:
    """The verdict as lines a person reads; times relative to the window's first call."""
    lines = [f"{verdict.verdict}: {verdict.calls:,} calls checked; {verdict.note}"]
    if verdict.window:
        start = verdict.window[0].inv
        lines.append("the calls around it (by invocation; * ran at once with it, "
                     "! the call no order can place):")
        for e in verdict.window:
            mark = "!" if e is verdict.culprit else "*" if e.line in verdict.overlapping \
                else " "
            lines.append(f" {mark} line {e.line:>7}  +{(e.inv - start) / 1e6:9.3f} ms .. "
                         f"+{(e.ret - start) / 1e6:9.3f} ms  {_brief(e)}")
    return lines
