"""The mutation suite: single-defect copies of `examples/simple_store.py` the checker must
catch.

Each `Mutant` is one plausible defect, written as a textual patch of the store's source:
`old` must occur there exactly once (the loader refuses it otherwise, so a patch cannot
silently stop applying when the store is edited) and is replaced by `new`. `kind` is the
class of defect. `minimal` is the length of the shortest program that shows the defect,
worked out by hand and written in `program`: the calls and clock moves after the store
is built, reads included. Not counted: what a checker looks at between steps
(`snapshot()`, `len()`, its own count of the store's threads) and the `close()` every
check ends with; a `close()` that other calls must follow is counted. `minimal` is the
denominator of "reported length / minimal length".

`MutantFactory(name)` is a store factory for a mutant: picklable (it holds only the
name), it compiles and executes the patched source into a fresh module object the first
time it is called in a process, and keeps that module for the process, so the checker
can run a mutant in spawned worker processes.

    python -m examples.mutants [--jobs N] [--examples N] [--stop-after N] [--json PATH]
                               [NAME ...]

runs the conformance check (`runbound.model.check.conformance.conform`) on each mutant to its first
failure and prints which invariant caught it, in how many calls, how soon;
tests/test_mutants.py requires every mutant to be caught.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, cast

from examples.simple_store import SimpleStore
from runbound.model.check.conformance import conform
from runbound.model.check.verify import Check
from runbound.model.clock import Clock
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities, RunStore

#: the classes of defect the issue names
KINDS = ("bad-argument", "untyped-error", "surrogate", "precedence", "clock", "closed",
         "len", "worker", "race", "pagination", "lru", "sequential")

SOURCE = Path(__file__).with_name("simple_store.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str
    old: str
    new: str
    minimal: int
    #: the shortest program that shows the defect, as `minimal` counts it
    program: str = ""


def _lines(*lines: str) -> str:
    """Source lines, as indented in simple_store.py, each ending its line."""
    return "".join(f"{line}\n" for line in lines)


def _opening(op: str, signature: str) -> str:
    """The first lines of an operation: its `def`, the lock, the L1 check."""
    return _lines(f"    def {op}({signature}:", "        with self._lock:",
                  "            self._open()")


def _unopened(op: str, signature: str) -> tuple[str, str]:
    """(old, new) of an operation that forgets L1."""
    return _opening(op, signature), _lines(f"    def {op}({signature}:", "        with self._lock:")


_START, _TRANSITION = "self, run_id: object) -> Run", "self, run_id: object, status: object) -> Run"
_HEARTBEAT, _GET = _START, _START
_APPEND = "self, run_id: object, payload: object) -> int"
_SWEEP_BLOCK = (
    "        reaped = [rid for rid, run in self._runs.items() if self._stale(run, now)]",
    "        for rid in reaped:",
    "            self._runs[rid] = replace(self._runs[rid], status=Status.FAILED, updated_at=now,",
    "                                      terminated_at=now)",
)
_EXPIRE_BLOCK = (
    "        expired = [rid for rid, run in self._runs.items() if self._expired(run, now)]",
    "        for rid in expired:",
    "            del self._runs[rid]",
)
_WORKER_START = (
    "        with self._lock:",
    "            self._open()",
    "            seconds = self._interval(interval)",
    "            if self._worker is not None and self._worker.is_alive():",
    "                return False",
    "            self._launch(seconds)",
    "            return True",
)
_COUNT = (
    "    def cleanup_workers_alive(self) -> int:",
    '        """Counted from the interpreter\'s threads by the name this store gives its worker,',
    '        not remembered: a thread no handle knows of is counted too (I11)."""',
    "        return sum(1 for t in threading.enumerate() if t.name == self._name)",
)
_MUTATION = (
    "        before = dict(self._runs)",
    "        now = self._now(run_id)",
    "        if self.policy.sweep is not SweepMode.BACKGROUND:",
    "            self._sweep(now)",
    "        try:",
    "            yield now",
    "        except RunboundError:",
    "            self._runs = before  # I10; not the mark: C1 keeps it raised",
)


def _all_mutants() -> tuple[Mutant, ...]:
    m = Mutant
    return (
        # --- a bad argument accepted, in each position -----------------------------------
        m("start-accepts-bad-id", "bad-argument",
          _opening("start", _START) + "            rid = self._run_id(run_id)\n",
          _opening("start", _START) + "            rid = run_id\n", 1,
          'start("")'),
        m("transition-accepts-bad-id", "bad-argument",
          _lines("            rid = self._run_id(run_id)",
                 "            target = self._status(rid, status)"),
          _lines("            rid = run_id", "            target = self._status(rid, status)"), 1,
          'transition(7, "running")'),
        m("heartbeat-accepts-bad-id", "bad-argument",
          _opening("heartbeat", _HEARTBEAT) + "            rid = self._run_id(run_id)\n",
          _opening("heartbeat", _HEARTBEAT) + "            rid = run_id\n", 1,
          'heartbeat(b"a")'),
        m("append-event-accepts-bad-id", "bad-argument",
          _lines("            rid = self._run_id(run_id)",
                 "            text = self._payload(rid, payload)"),
          _lines("            rid = run_id", "            text = self._payload(rid, payload)"), 1,
          'append_event(None, "e1")'),
        m("get-accepts-bad-id", "bad-argument",
          "            rid = self._run_id(run_id)\n            now = self._now(rid)\n",
          "            rid = run_id\n            now = self._now(rid)\n", 1,
          "get(None)"),
        m("long-id-accepted", "bad-argument",
          "not 1 <= len(value) <= MAX_RUN_ID_LENGTH", "not value", 1,
          'start("x" * 129)'),
        m("status-filter-unchecked", "bad-argument",
          'wanted = None if status is None else self._status("*", status)',
          "wanted = status", 1,
          'list_runs(5, "paused")'),
        m("limit-bool-accepted", "bad-argument",
          "if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value",
          "if not isinstance(value, int) or not 1 <= value", 1,
          "list_runs(True)"),
        m("limit-unbounded", "bad-argument",
          "not 1 <= value <= _MAX_INT", "value < 1", 1,
          "list_runs(2**63)"),
        m("cursor-beyond-int64-accepted", "bad-argument",
          " or int(value) > _MAX_INT", "", 1,
          'list_runs(5, None, str(2**63))'),
        m("interval-unbounded", "bad-argument",
          "or not 0 < value <= _MAX_INTERVAL", "or not 0 < value", 1,
          "start_cleanup_worker(2e9)"),
        m("interval-bool-accepted", "bad-argument",
          "if (isinstance(value, bool) or not isinstance(value, int | float)",
          "if (not isinstance(value, int | float)", 1,
          "start_cleanup_worker(True)"),
        # --- a bad argument raising an untyped error ---------------------------------------
        m("status-raises-valueerror", "untyped-error",
          "if isinstance(value, str) and value in _NAMES:", "if isinstance(value, str):", 1,
          'transition("a", "paused") raises ValueError'),
        m("payload-type-unchecked", "untyped-error",
          _lines("        if not isinstance(payload, str):",
                 '            raise InvalidArgument(run_id, "n/a", f"R3: a payload is a str, got "',
                 '                                                 f"{_shown(payload)}")'),
          "", 1,
          'append_event("a", 12) raises TypeError'),
        m("limit-float-typeerror", "untyped-error",
          "or not isinstance(value, int) or", "or", 1,
          "list_runs(2.5) raises TypeError"),
        m("cursor-non-ascii-digits", "untyped-error",
          "not (value.isascii() and value.isdigit())", "not value.isdigit()", 1,
          'list_runs(5, None, "²") raises ValueError'),
        m("cursor-length-unchecked", "untyped-error",
          "not 1 <= len(value) <= _CURSOR_DIGITS", "not value", 1,
          'list_runs(5, None, "9" * 5000) raises ValueError'),
        # --- a lone surrogate accepted ---------------------------------------------------------
        m("id-surrogate-accepted", "surrogate",
          _lines("        if _has_surrogate(value):",
                 '            raise InvalidArgument(_shown(value), "n/a", "R1: a run id holds no '
                 'surrogate")'),
          "", 1,
          'start("\\ud800")'),
        m("payload-surrogate-accepted", "surrogate",
          _lines("        if _has_surrogate(payload):",
                 '            raise InvalidArgument(run_id, "n/a", "R3: a payload holds no '
                 'surrogate")'),
          "", 1,
          'append_event("a", "\\udfff") raises UnknownRun, not InvalidArgument'),
        # --- the order of checks -----------------------------------------------------------
        m("start-checks-id-before-closed", "precedence",
          _lines("            self._open()", "            rid = self._run_id(run_id)",
                 "            with self._mutation(rid) as now:",
                 "                old = self._runs.get(rid)"),
          _lines("            rid = self._run_id(run_id)", "            self._open()",
                 "            with self._mutation(rid) as now:",
                 "                old = self._runs.get(rid)"), 2,
          'close(); start("")'),
        m("list-runs-checks-limit-before-closed", "precedence",
          _lines("            self._open()", "            count = self._limit(limit)"),
          _lines("            count = self._limit(limit)", "            self._open()"), 2,
          "close(); list_runs(0)"),
        m("append-event-reads-clock-before-payload", "precedence",
          "            text = self._payload(rid, payload)\n",
          "            self._reading(rid)  # fail fast on a broken clock\n"
          "            text = self._payload(rid, payload)\n", 2,
          'clock reads nan; append_event("a", 12)'),
        m("transition-reads-clock-before-status", "precedence",
          "            target = self._status(rid, status)\n",
          "            self._reading(rid)  # fail fast on a broken clock\n"
          "            target = self._status(rid, status)\n", 2,
          'clock reads nan; transition("a", "paused")'),
        # --- the clock (C1) --------------------------------------------------------------------
        m("no-clock-clamp", "clock",
          _lines("        self._mark = max(self._mark, reading)", "        return self._mark"),
          _lines("        self._mark = max(self._mark, reading)", "        return reading"), 3,
          'start("a"); clock reads 1 s back; heartbeat("a")'),
        m("get-does-not-raise-mark", "clock",
          _lines("            now = self._now(rid)", "            return self._visible(rid, now)"),
          _lines("            now = max(self._mark, self._reading(rid))  # a read changes nothing",
                 "            return self._visible(rid, now)"), 3,
          'get("a"); clock reads 1 s back; start("a")'),
        m("refused-call-does-not-raise-mark", "clock",
          _lines(*_MUTATION),
          _lines("        before = dict(self._runs), self._mark", *_MUTATION[1:-1],
                 "            self._runs, self._mark = before  # I10: as if never called"), 3,
          'heartbeat("a"); clock reads 1 s back; start("a")'),
        m("nan-reading-accepted", "clock",
          "not math.isfinite(reading)", "math.isinf(reading)", 2,
          'clock reads nan; start("a")'),
        m("infinite-reading-accepted", "clock",
          "not math.isfinite(reading)", "math.isnan(reading)", 2,
          'clock reads inf; start("a")'),
        m("lazy-sweep-reads-clock-again", "clock",
          "            self._sweep(now)\n        try:\n",
          "            self._sweep(self._reading(run_id))\n        try:\n", 3,
          'stale_after=0: start("a"); clock reads 1 s back; start("b")'),
        # --- calls after close accepted ----------------------------------------------------
        m("start-after-close", "closed", *_unopened("start", _START), 2,
          'close(); start("a")'),
        m("transition-after-close", "closed", *_unopened("transition", _TRANSITION), 2,
          'close(); transition("a", "running")'),
        m("heartbeat-after-close", "closed", *_unopened("heartbeat", _HEARTBEAT), 2,
          'close(); heartbeat("a")'),
        m("append-event-after-close", "closed", *_unopened("append_event", _APPEND), 2,
          'close(); append_event("a", "e1")'),
        m("get-after-close", "closed", *_unopened("get", _GET), 2,
          'close(); get("a")'),
        m("list-runs-after-close", "closed",
          _lines("            self._open()", "            count = self._limit(limit)"),
          _lines("            count = self._limit(limit)"), 2,
          "close(); list_runs(1)"),
        m("prune-after-close", "closed", *_unopened("prune", "self) -> SweepResult"), 2,
          "close(); prune()"),
        m("worker-start-after-close", "closed",
          _lines("            self._open()", "            seconds = self._interval(interval)"),
          _lines("            seconds = self._interval(interval)"), 2,
          "close(); start_cleanup_worker(5)"),
        m("snapshot-after-close", "closed",
          *_unopened("snapshot", "self) -> tuple[Run, ...]"), 2,
          "close(); snapshot()"),
        # --- len ---------------------------------------------------------------------------
        m("len-counts-visible-only", "len",
          "            return len(self._runs)\n",
          "            return sum(1 for r in self._runs.values()\n"
          "                       if not self._expired(r, self._mark))\n",
          2, 'ttl=0: start("a"); transition("a", "failed"); (len() is 0, not 1)'),
        m("len-after-close", "len",
          _lines('        """Runs retained, expired ones not yet swept included."""',
                 "        with self._lock:", "            self._open()"),
          _lines('        """Runs retained, expired ones not yet swept included."""',
                 "        with self._lock:"), 2,
          "close(); len()"),
        # --- the cleanup worker (W2, W3, I11, I16, I18) -------------------------------------
        m("worker-waits-on-real-time", "worker",
          "while not sleep(self._clock, delay, stop):", "while not stop.wait(delay):", 1,
          "start_cleanup_worker(5) (its thread waits, but not on the store's clock; by "
          'its effect: stale_after=5: start("a"); start_cleanup_worker(5); '
          "clock.advance(5))"),
        m("worker-sweeps-every-other-wake", "worker",
          "            failures, delay = 0, interval\n",
          "            failures, delay = 0, interval\n"
          "            if sleep(self._clock, delay, stop):  # rest until the next interval\n"
          "                return\n", 3,
          'stale_after=20: start("a"); start_cleanup_worker(5); clock.advance(20) (it sweeps '
          "at 1005 and 1015 only)"),
        m("stop-does-not-join", "worker",
          _lines("        if thread is not None and running and thread is not "
                 "threading.current_thread():",
                 "            thread.join(timeout)"),
          "", 2,
          "start_cleanup_worker(5); stop_cleanup_worker() (its thread still runs)"),
        m("remembered-worker-count", "worker",
          "        return sum(1 for t in threading.enumerate() if t.name == self._name)",
          "        return int(self._worker is not None)", 2,
          "start_cleanup_worker(5); stop_cleanup_worker() (the store counts 1, no thread runs)"),
        m("handle-counted-worker", "worker",
          _lines("        with self._lock:", "            thread = self._worker",
                 "            running = thread is not None and thread.is_alive()",
                 "            self._stop.set()",
                 "        if thread is not None and running and thread is not "
                 "threading.current_thread():",
                 "            thread.join(timeout)",
                 "        return running", "", *_COUNT),
          _lines("        with self._lock:",
                 "            thread, self._worker = self._worker, None",
                 "            running = thread is not None and thread.is_alive()",
                 "            self._stop.set()  # it ends on its own",
                 "        return running", "", *_COUNT[:-1],
                 "        return int(self._worker is not None and self._worker.is_alive())"), 2,
          "start_cleanup_worker(5); stop_cleanup_worker() (returns, the store counts 0, its "
          "thread still runs)"),
        m("close-leaves-worker-running", "worker",
          _lines("            self._closed = True", "            thread = self._worker",
                 "            self._stop.set()",
                 "        if thread is not None and thread is not threading.current_thread():",
                 "            thread.join()"),
          _lines("            self._closed = True"), 1,
          "start_cleanup_worker(5) (and the final close(): its thread still runs)"),
        m("logs-every-failed-sweep", "worker",
          "                if failures & (failures - 1) == 0:\n",
          "                if failures:\n", 3,
          "start_cleanup_worker(1); clock reads nan; clock.advance(3600) (116 failed sweeps, "
          "each logged; the bound is 32)"),
        # --- races (I11, I19) ----------------------------------------------------------------
        m("lockless-worker-start", "race",
          _lines(*_WORKER_START),
          _lines(*(line[4:] for line in _WORKER_START[1:])), 2,
          "two threads at once: start_cleanup_worker(3600) (two workers)"),
        m("racy-worker-start", "race",
          _lines(*_WORKER_START[-3:]),
          _lines(_WORKER_START[-3], *(line[4:] for line in _WORKER_START[-2:])), 2,
          "two threads at once: start_cleanup_worker(3600) (the check, then the start "
          "after the lock)"),
        m("unlocked-start", "race",
          _lines("    def start(self, run_id: object) -> Run:", "        with self._lock:"),
          _lines("    def start(self, run_id: object) -> Run:",
                 "        if True:  # dict operations are atomic under the GIL"), 2,
          'two threads at once: start("a") (both succeed)'),
        # --- pagination ----------------------------------------------------------------------
        m("cursor-repeats-last-run", "pagination",
          "r.seq < below)", "r.seq <= below)", 4,
          'start("a"); start("b"); list_runs(1); the next page (b again)'),
        m("cursor-skips-a-run", "pagination",
          "r.seq < below)", "r.seq < below - 1)", 4,
          'start("a"); start("b"); list_runs(1); the next page (a skipped)'),
        m("next-cursor-on-full-last-page", "pagination",
          "more = len(matching) > count", "more = len(matching) >= count", 2,
          'start("a"); list_runs(1)'),
        m("next-cursor-missing-when-more", "pagination",
          "more = len(matching) > count", "more = len(matching) > count + 1", 3,
          'start("a"); start("b"); list_runs(1)'),
        m("status-filter-first-page-only", "pagination",
          "if (wanted is None or r.status is wanted)",
          "if (wanted is None or below is not None or r.status is wanted)", 6,
          'start("a"); start("b"); start("c"); transition("b", "running"); '
          'list_runs(1, "pending"); the next page (b, which is running)'),
        # --- reads with effects ----------------------------------------------------------------
        m("get-moves-run-to-back", "lru",
          "            return self._visible(rid, now)\n",
          "            run = self._visible(rid, now)\n"
          "            self._runs[rid] = self._runs.pop(rid)  # most recently used last\n"
          "            return run\n", 4,
          'start("a"); start("b"); get("a"); list_runs(1) (a, not b)'),
        m("list-refreshes-its-runs", "lru",
          "            page = matching[:count]\n",
          "            page = matching[:count]\n"
          "            for r in page:  # what was just read is kept longest\n"
          "                self._runs[r.run_id] = self._runs.pop(r.run_id)\n", 4,
          'start("a"); start("b"); list_runs(2); list_runs(1) (a, not b)'),
        # --- sequential rules --------------------------------------------------------------
        m("cap-evicts-active", "sequential",
          _lines("        ended = sorted((r for r in self._runs.values() if r.terminated_at is "
                 "not None),", "                       key=_terminated_at)"),
          "        ended = sorted(self._runs.values(), key=lambda r: r.seq)\n", 2,
          'max_terminal=0: start("a"); prune()'),
        m("cap-off-by-one", "sequential",
          "ended[:max(0, len(ended) - cap)]", "ended[:max(0, len(ended) - cap - 1)]", 2,
          'max_terminal=0: start("a"); transition("a", "failed")'),
        m("cap-evicts-newest", "sequential",
          "ended[:max(0, len(ended) - cap)]", "ended[len(ended) - max(0, len(ended) - cap):]",
          3, 'max_terminal=1, stale_after=0: start("a"); start("b"); start("c") (the sweeps '
             'reap a and b)'),
        m("transition-leaves-cap-to-sweep", "sequential",
          _lines("                if done:  # the cap does not wait for a sweep (policy.md)",
                 "                    self._enforce_cap()"),
          "", 2,
          'max_terminal=0: start("a"); transition("a", "failed")'),
        m("ttl-strict-greater", "sequential",
          "now >= run.terminated_at + ttl", "now > run.terminated_at + ttl", 2,
          'ttl=0, stale_after=0: start("a"); transition("a", "cancelled") (its lazy sweep '
          "reaped a, expired at once)"),
        m("lease-reaps-terminal-runs", "sequential",
          "run.terminated_at is None and lease is not None", "lease is not None", 3,
          'sweep=background, stale_after=0: start("a"); transition("a", "cancelled"); prune() '
          "(a cancelled run reaped to failed)"),
        m("append-event-keeps-lease", "sequential",
          "dropped_events=dropped,\n                                          updated_at=now)",
          "dropped_events=dropped)", 3,
          'start("a"); clock.advance(1); append_event("a", "e1")'),
        m("heartbeat-keeps-updated-at", "sequential",
          'new = replace(self._live(rid, now, "heartbeat"), updated_at=now)',
          'new = self._live(rid, now, "heartbeat")', 3,
          'start("a"); clock.advance(1); heartbeat("a")'),
        m("admission-counts-terminal", "sequential",
          "active = sum(1 for r in self._runs.values() if r.terminated_at is None)",
          "active = len(self._runs)", 2,
          'max_active=1, stale_after=0: start("a"); start("b")'),
        m("restart-keeps-old-events", "sequential",
          "run = Run(rid, Status.PENDING, now, now, seq=self._next_seq)",
          "run = Run(rid, Status.PENDING, now, now, seq=self._next_seq,\n"
          "                          events=() if old is None else old.events)", 4,
          'start("a"); append_event("a", "e1"); transition("a", "failed"); start("a")'),
        m("ring-buffer-drops-newest", "sequential",
          "events = events[len(events) - cap:]", "events = events[:cap]", 3,
          'max_events_per_run=1: start("a"); append_event("a", "e1"); '
          'append_event("a", "e2")'),
        m("ring-buffer-forgets-drops", "sequential",
          "                    dropped += len(events) - cap\n", "", 2,
          'max_events_per_run=0: start("a"); append_event("a", "e1")'),
        m("event-numbers-from-zero", "sequential",
          "return old.dropped_events + len(old.events) + 1",
          "return old.dropped_events + len(old.events)", 2,
          'start("a"); append_event("a", "e1")'),
        m("pending-may-complete", "sequential",
          "if target not in TRANSITIONS[old.status]:",
          "if old.status in TERMINAL or target is old.status:", 2,
          'start("a"); transition("a", "completed")'),
        m("pending-run-restartable", "sequential",
          "if old is not None and old.terminated_at is None:",
          "if old is not None and old.status is Status.RUNNING:", 2,
          'start("a"); start("a")'),
        m("both-mode-skips-lazy-sweep", "sequential",
          "if self.policy.sweep is not SweepMode.BACKGROUND:",
          "if self.policy.sweep is SweepMode.LAZY:", 2,
          'sweep=both, stale_after=0: start("a"); start("a")'),
        m("background-mode-sweeps-lazily", "sequential",
          "if self.policy.sweep is not SweepMode.BACKGROUND:",
          "if self.policy.ttl is not None or self.policy.stale_after is not None:", 2,
          'sweep=background, stale_after=0: start("a"); start("a")'),
        m("expire-before-reap", "sequential",
          _lines(*_SWEEP_BLOCK, *_EXPIRE_BLOCK), _lines(*_EXPIRE_BLOCK, *_SWEEP_BLOCK), 2,
          'ttl=0, stale_after=0: start("a"); prune()'),
        m("reap-keeps-updated-at", "sequential",
          "status=Status.FAILED, updated_at=now,\n", "status=Status.FAILED,\n", 3,
          'stale_after=5: start("a"); clock.advance(5); prune()'),
        m("list-shows-expired", "sequential",
          "                        and not self._expired(r, now)]\n",
          "                        ]\n", 3,
          'ttl=0: start("a"); transition("a", "failed"); list_runs(1)'),
        m("get-shows-expired", "sequential",
          _lines("        if self._expired(run, now):",
                 '            raise UnknownRun(rid, run.status, "V2: the run is past its TTL")'),
          "", 3,
          'ttl=0: start("a"); transition("a", "failed"); get("a")'),
        m("get-sweeps", "sequential",
          _lines("            now = self._now(rid)", "            return self._visible(rid, now)"),
          _lines("            now = self._now(rid)",
                 "            self._sweep(now)  # tidy up while we hold the lock",
                 "            return self._visible(rid, now)"), 2,
          'stale_after=0: start("a"); get("a")'),
        m("refused-call-keeps-lazy-sweep", "sequential",
          _lines("            self._runs = before  # I10; not the mark: C1 keeps it raised"),
          "", 2,
          'stale_after=0: start("a"); heartbeat("b")'),
    )


MUTANTS: dict[str, Mutant] = {mutant.name: mutant for mutant in _all_mutants()}


@cache
def source() -> str:
    return SOURCE.read_text()


def patched(mutant: Mutant) -> str:
    """The store's source with the mutant's defect in it."""
    text = source()
    found = text.count(mutant.old)
    if found != 1:
        raise ValueError(f"mutant {mutant.name!r}: its old text occurs {found} times in "
                         f"{SOURCE.name}, it must occur once:\n{mutant.old}")
    return text.replace(mutant.old, mutant.new)


_modules: dict[str, ModuleType] = {}
_modules_lock = threading.Lock()  # guards _modules: factories may be called from threads


def load(name: str) -> ModuleType:
    """The mutant's module, compiled and executed on first use in this process."""
    with _modules_lock:
        module = _modules.get(name)
        if module is None:
            code = compile(patched(MUTANTS[name]), f"{SOURCE} [mutant {name}]", "exec")
            module = ModuleType(f"examples.simple_store[{name}]")
            module.__file__ = str(SOURCE)
            exec(code, module.__dict__)
            _modules[name] = module
        return module


@dataclass(frozen=True)
class MutantFactory:
    """A store factory `(policy, clock) -> store` for one mutant; pickles as its name."""

    name: str
    #: what the unmutated store declares: no mutant touches it
    capabilities: ClassVar[Capabilities] = SimpleStore.capabilities

    def __post_init__(self) -> None:
        if self.name not in MUTANTS:
            raise KeyError(f"no mutant {self.name!r}")

    def __call__(self, policy: Policy, clock: Clock) -> RunStore:
        return cast(RunStore, load(self.name).SimpleStore(policy, clock))


# --- the suite: each mutant through the conformance check ----------------------------------

@dataclass
class Verdict:
    name: str
    kind: str
    minimal: int
    #: the invariant whose check failed first, or None: the mutant survived
    caught_by: str | None
    #: the length of the program the checker reported
    reported: int | None
    #: seconds from the start of the check to its first failing verdict
    seconds_to_first_failure: float | None
    seconds: float
    #: the failure, or for a survivor every verdict that was not a pass
    note: str


def verdict(name: str, examples: int | None = None) -> Verdict:
    """Check one mutant with `conform`, all of it in this process (`jobs=1`, so the
    checks run in `FAIL_FAST_ORDER` and stop at the first failure: nothing runs on after
    a verdict). Mutants run side by side in processes of their own instead: a mutant that
    leaks threads (a worker close() forgets) leaks them only there."""
    mutant = MUTANTS[name]
    began = time.perf_counter()
    first: list[float] = []

    def landed(check: Check) -> None:
        if check.verdict == "fail" and not first:
            first.append(round(time.perf_counter() - began, 2))

    report = conform(MutantFactory(name), examples=examples, jobs=1, fail_fast=True,
                     name=name, progress=landed)
    seconds = round(time.perf_counter() - began, 2)
    caught = next((c for c in report.checks if c.verdict == "fail"), None)
    if caught is not None:
        return Verdict(name, mutant.kind, mutant.minimal, caught.invariant, caught.steps,
                       first[0] if first else None, seconds, caught.note[:300])
    notes = [f"{c.invariant} {c.verdict}: {c.note}"[:160] for c in report.checks
             if c.verdict not in ("pass", "skipped")]
    return Verdict(name, mutant.kind, mutant.minimal, None, None, None, seconds,
                   "; ".join(notes) or "every applicable invariant passed")


def verdicts(names: Iterable[str], *, examples: int | None = None, jobs: int = 1,
             stop_after: int | None = None,
             progress: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """`verdict` of each mutant, `jobs` at a time, each in a new spawned process; in the
    order given. `stop_after`: stop once that many mutants have survived (the suite has
    failed by then, and each survivor costs every check's whole budget): the mutants not
    yet checked are left out."""
    names = list(names)
    done: dict[str, Verdict] = {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(
        "spawn"), max_tasks_per_child=1)
    try:
        futures = [pool.submit(verdict, name, examples) for name in names]
        for future in as_completed(futures):
            result = future.result()
            done[result.name] = result
            if progress is not None:
                progress(result)
            if stop_after is not None and sum(
                    r.caught_by is None for r in done.values()) >= stop_after:
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [done[name] for name in names if name in done]


def summary(results: Sequence[Verdict], examples: int | None, jobs: int
            ) -> dict[str, Any]:
    """The kill rate among the mutants checked, the median seconds to the first failure,
    and the median of the reported program's length over the minimal one, with every
    verdict. (A probe's "length" is the number of lines it reports, not calls: its ratio
    means little.)"""
    caught = [r for r in results if r.caught_by is not None]
    firsts = [r.seconds_to_first_failure for r in caught
              if r.seconds_to_first_failure is not None]
    ratios = [r.reported / r.minimal for r in caught if r.reported is not None]
    return {"mutants": len(results), "caught": len(caught),
            "kill_rate": round(len(caught) / len(results), 3) if results else None,
            "median_seconds_to_first_failure":
                round(statistics.median(firsts), 2) if firsts else None,
            "median_reported_over_minimal":
                round(statistics.median(ratios), 2) if ratios else None,
            "survivors": [r.name for r in results if r.caught_by is None],
            "not_checked": sorted(MUTANTS.keys() - {r.name for r in results}),
            "examples_per_invariant": examples, "jobs": jobs,
            "results": [asdict(r) for r in results]}


def line(result: Verdict) -> str:
    caught = f"caught by {result.caught_by}" if result.caught_by else "SURVIVED"
    length = (f"{result.reported} calls (minimal {result.minimal})"
              if result.reported is not None else "")
    return (f"{result.name:38} {result.kind:13} {caught:15} {length:22} "
            f"{result.seconds:7.2f}s  {result.note[:100]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.mutants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutants to check (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--examples", type=int, default=None,
                        help="examples per invariant (default: the profile's)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop once N mutants have survived (default: check all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results = verdicts(args.names or list(MUTANTS), examples=args.examples, jobs=args.jobs,
                       stop_after=args.stop_after,
                       progress=lambda r: print(line(r), flush=True))
    report = summary(results, args.examples, args.jobs)
    print(f"caught {report['caught']} of {report['mutants']} checked "
          f"({len(report['not_checked'])} not checked); median seconds "
          f"to the first "
          f"failure {report['median_seconds_to_first_failure']}; median reported/minimal "
          f"length {report['median_reported_over_minimal']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if not report["survivors"] else 1


if __name__ == "__main__":
    sys.exit(main())
