"""`runbound verify`: hold stores to the model and tabulate the verdicts.

Each (store, invariant) pair is its own check, raising on that invariant only, so a common
violation cannot mask a rarer one and each gets its own counterexample. The property
registry (`runbound.model.invariants.INVARIANTS`) names the checkers that decide each
property; `DECIDERS` is the one table from those names to the functions here, so no
property is special-cased by id. A verdict is:
- "pass": the budget ran out with no violation;
- "fail": with the program, made 1-minimal by replay (`check/minimize.py`), its length, the
  seconds until the first violation was seen, and what differed;
- "unknown": the check could not run to an answer (a store it could not build or drive,
  a race window never exercised, a search budget spent). Never a pass: it fails a run
  unless the user tolerates it;
- "skipped": left out because the store declares it lacks what the check needs.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hypothesis import Phase, Verbosity
from hypothesis import errors as hypothesis_errors
from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runbound.model.calls import call_text, policy_to_json, shown
from runbound.model.check import counterexample as cx
from runbound.model.check import linearizability, probes, timeline
from runbound.model.check.capabilities import capabilities_of
from runbound.model.check.counterexample import Counterexample, Differed, HistoryCall
from runbound.model.check.coverage import vacuous_note
from runbound.model.check.minimize import minimize, run_program
from runbound.model.check.profiles import MINIMIZE_REPLAYS, machine_settings, profile_name
from runbound.model.check.stateful import CheckUnknown, machine_for, probe_programs
from runbound.model.errors import StoreProcessError
from runbound.model.files import SPECS
from runbound.model.invariants import INVARIANTS, Checker, InvariantViolation
from runbound.model.protocol import Capabilities, StoreFactory

Verdict = Literal["pass", "fail", "unknown", "skipped"]

#: where an I19 failure's timeline is written (HTML, Porcupine's JSON)
TIMELINES = Path("out/timelines")


@dataclass
class Check:
    invariant: str
    verdict: Verdict
    #: calls in the shrunk counterexample, or calls made in all when it passed
    steps: int
    #: seconds until the first violation was seen; the whole run when it passed
    seconds: float
    #: on a failure: what broke, how, and the program (or history, or probe) that shows
    #: it (`runbound.model.check.counterexample`)
    counterexample: Counterexample | None = None
    note: str = ""
    #: what the stateful run exercised (`runbound.model.check.coverage`), when it ran
    coverage: dict[str, Any] | None = None

    @property
    def differed(self) -> str:
        """What was seen, one line ("" unless it failed)."""
        return "" if self.counterexample is None else self.counterexample.differed.seen

    @property
    def minimal(self) -> bool:
        """The counterexample is 1-minimal (every single step was tried away)."""
        return self.counterexample is not None and self.counterexample.minimal

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "verdict": self.verdict, "steps": self.steps,
                "seconds": self.seconds, "note": self.note, "coverage": self.coverage,
                "counterexample": None if self.counterexample is None
                else cx.to_json(self.counterexample)}


@dataclass
class StoreReport:
    name: str
    #: the invariants the store is known to break: none for a store that must conform;
    #: a replica's documented defects; a broken store's planted one
    expected: frozenset[str] = frozenset()
    #: True: it must fail exactly `expected`: a conforming store (expected empty), or a
    #: fix that must not regress. False: at least `expected` (the checker may find more).
    exact: bool = True
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> set[str]:
        return {c.invariant for c in self.checks if c.verdict == "fail"}

    @property
    def unknown(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "unknown"]

    @property
    def as_expected(self) -> bool:
        """Among the invariants checked: an exact store fails exactly its expected ones;
        any other fails at least those (and may fail more: the checker reports them).
        An unknown verdict where a failure is not expected is not as expected."""
        checked = {c.invariant for c in self.checks}
        undecided = {c.invariant for c in self.unknown} - self.expected
        if undecided:
            return False
        if self.exact:
            return self.failed == self.expected & checked
        return (self.expected & checked) <= self.failed


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


#: the counterexamples `runbound seeds` committed: replayed first by `verify`, so a
#: defect once found is found in every run, however rare it is to draw (a fuzzer's corpus)
CORPUS = SPECS / "seeds.json"


def corpus(invariant: str, path: Path = CORPUS) -> list[list[dict[str, Any]]]:
    """The committed programs that broke `invariant` in some store (none if the file is
    absent, as in an installed wheel)."""
    if not path.exists():
        return []
    found = [cx.from_json(row["counterexample"], str(path))
             for row in json.loads(path.read_text()) if row.get("counterexample")]
    return [list(c.program) for c in found if c.invariant == invariant and c.replayable]


@dataclass(frozen=True)
class Task:
    """What a checker is asked: one property of the stores a factory builds."""

    factory: StoreFactory
    invariant: str
    settings: Settings
    capabilities: Capabilities
    #: earlier counterexamples, replayed before a search
    programs: tuple[Sequence[dict[str, Any]], ...] = ()


#: a checker, asked one property of a factory's stores
DecideFn = Callable[[Task], Check]


def check_invariant(factory: StoreFactory, invariant: str, settings: Settings,
                    capabilities: Any = None, *, restart_all: bool = False,
                    programs: Sequence[Sequence[dict[str, Any]]] = ()) -> Check:
    """One verdict: each checker the property registry names for `invariant` (`DECIDERS`),
    in order. It passes when every one passes (a race never exercised leaves the start
    race unknown, so I11 with it); otherwise the first verdict that is not a pass, with
    the seconds of all. A check the store's declared capabilities leave out is
    "skipped". `restart_all`: check I17 whatever the store declares (`verify`'s table
    shows which stores keep their runs). `programs`: replayed before the search (a
    corpus of earlier counterexamples)."""
    caps = capabilities if capabilities is not None else capabilities_of(factory)
    prop = INVARIANTS[invariant]
    durable = restart_all and prop.needs == "durable"
    why = None if durable else caps.skipped().get(invariant)
    if why is not None:
        return Check(invariant, "skipped", 0, 0.0, note=f"not checked: the store {why}")
    task = Task(factory, invariant, settings, caps, tuple(programs))
    began = time.perf_counter()
    checks: list[Check] = []
    try:
        for checker in prop.checkers:
            checks.append(DECIDERS[checker](task))
            if checks[-1].verdict != "pass":
                break
    except StoreProcessError as error:  # a crash, a hang, garbage: the store failed
        return Check(invariant, "fail", 0, round(time.perf_counter() - began, 3),
                     Counterexample(invariant, "probe", Differed(str(error)),
                                    steps=(str(error),)),
                     f"the store process failed: {error}")
    # the first that did not pass; when all passed, the first (the stateful check's calls
    # and coverage, where it is one), with the notes of all
    verdict = checks[-1] if checks[-1].verdict != "pass" else checks[0]
    verdict.seconds = round(sum(c.seconds for c in checks), 3)
    verdict.note = "; ".join(c.note for c in checks if c.note)
    return verdict


def _linearizable(task: Task) -> Check:
    """I19: threads call the store at once; each history must be linearizable."""
    factory = task.factory
    began = time.perf_counter()
    verdict, history = linearizability.stress(factory)
    seconds = round(time.perf_counter() - began, 3)
    if verdict.verdict == "pass":
        return Check("I19", "pass", verdict.explored, seconds,
                     note=f"{verdict.overlapped} of {verdict.histories} histories had "
                          "overlapping calls")
    if verdict.verdict == "unknown":
        return Check("I19", "unknown", verdict.explored, seconds, note=verdict.note)
    policy = policy_to_json(linearizability.STRESS_POLICY)
    if verdict.minimal and verdict.culprit is not None:
        # cut to the calls that conflict: a race shrunk to the calls that cannot be
        # ordered, or a defect without a race cut to the calls that show it
        culprit = verdict.culprit
        differed = Differed(verdict.note)
        page = ""
        if verdict.conflict:  # a race: the same, as a timeline to look at
            # a file name: an exec factory's name is a command line, slashes and all
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", getattr(factory, "__name__", "store"))
            page = str(timeline.write(timeline.from_calls(
                verdict.minimal, culprit, f"I19: {getattr(factory, '__name__', '')}",
                verdict.note), TIMELINES, f"I19-{stem}")[0])
        else:
            differed = Differed(verdict.note, call_text(culprit.op, culprit.args),
                                shown(verdict.expected), shown(culprit.result))
        start = min(c.invoked for c in verdict.minimal)
        calls = tuple(HistoryCall(c.thread, call_text(c.op, c.args), shown(c.result),
                                  c.invoked - start, c.returned - start, c is culprit)
                      for c in verdict.minimal)
        return Check("I19", "fail", len(calls), seconds, Counterexample(
            "I19", "history", differed, policy=policy, minimal=True, history=calls,
            timeline=page), f"I19: {verdict.note}")
    # not cut (the shrinking search ran over its budget): the history as recorded
    more = [f"# ... {len(history) - 20} more calls"] if len(history) > 20 else []
    return Check("I19", "fail", len(history), seconds, Counterexample(
        "I19", "probe", Differed(verdict.note), policy=policy,
        steps=(*verdict.unordered, "# the history, by invocation:", *history[:20], *more)),
        f"I19: {verdict.note}")


def _from_probe(checker: Checker) -> DecideFn:
    """A probe as a checker: it runs on its own stores, its verdict as it says."""
    return lambda task: _probe_check(task.invariant, lambda: probes.PROBES[checker](
        task.factory))


def _probe_check(invariant: str, probe: Callable[[], probes.ProbeResult]) -> Check:
    began = time.perf_counter()
    result = probe()
    seconds = round(time.perf_counter() - began, 3)
    verdict: Verdict = "fail" if result.verdict == "fail" else (
        "pass" if result.verdict == "pass" else "unknown")
    found = Counterexample(invariant, "probe", Differed(result.message),
                           steps=tuple(result.steps)) if verdict == "fail" else None
    return Check(invariant, verdict, len(result.steps), seconds, found, result.message)


def _stateful(task: Task) -> Check:
    """The stateful check, raising on `task.invariant` only; the store restarted among its
    steps where the property is about restarts (I17) or the store declares itself
    durable (a restart must then change nothing any other property sees)."""
    factory, invariant, settings = task.factory, task.invariant, task.settings
    capabilities, programs = task.capabilities, task.programs
    restarts = INVARIANTS[invariant].needs == "durable" or capabilities.durable
    machine = machine_for(factory, enforce={invariant}, capabilities=capabilities,
                          restarts=restarts)
    began = time.perf_counter()
    for program in (*probe_programs(capabilities), *programs):
        try:
            replayed = run_program(factory, program, {invariant}, capabilities,
                                   machine.coverage)
        except CheckUnknown:
            continue
        if replayed is not None:
            return _failed(factory, invariant, capabilities, replayed,
                           round(time.perf_counter() - began, 3), 0)
    try:
        # generation only: Hypothesis's shrinker is bounded by wall-clock seconds, ours
        # (check/minimize.py) by replays, so the same failure gives the same program on a
        # loaded machine. Quiet: verify renders its own report.
        run_state_machine_as_test(machine, settings=Settings(
            settings, report_multiple_bugs=False, verbosity=Verbosity.quiet,
            phases=[p for p in settings.phases if p is not Phase.shrink]))
    except InvariantViolation as violation:
        found = machine.first_seen.get(invariant, time.perf_counter())
        return _failed(factory, invariant, capabilities, violation,
                       round(found - began, 3), machine.calls[0])
    except hypothesis_errors.Flaky as flaky:
        return Check(invariant, "unknown", machine.calls[0],
                     round(time.perf_counter() - began, 3),
                     note=f"not reproducible (threads?): {str(flaky).splitlines()[0]}")
    except Exception as error:  # the check could not run: say so, never call it a pass
        return Check(invariant, "unknown", machine.calls[0],
                     round(time.perf_counter() - began, 3),
                     note=f"{type(error).__name__}: {error}"[:300])
    seconds = round(time.perf_counter() - began, 3)
    missing = machine.coverage.missing(invariant)
    if missing:  # nothing happened that this invariant is about: not a pass
        return Check(invariant, "unknown", machine.calls[0], seconds,
                     note=vacuous_note(invariant, missing, machine.calls[0]),
                     coverage=machine.coverage.to_json())
    return Check(invariant, "pass", machine.calls[0], seconds,
                 coverage=machine.coverage.to_json())


#: each checker the property registry names (`Invariant.checkers`), as a function of the
#: task: the one place a property is sent to what decides it
DECIDERS: dict[Checker, DecideFn] = {
    Checker.STATEFUL: _stateful,
    Checker.START_RACE: _from_probe(Checker.START_RACE),
    Checker.FAILING_SWEEPS: _from_probe(Checker.FAILING_SWEEPS),
    Checker.LINEARIZABILITY: _linearizable,
}


def _failed(factory: StoreFactory, invariant: str, capabilities: Any,
            violation: InvariantViolation, seconds: float, calls: int) -> Check:
    """A violation found: its program made 1-minimal by replay, or "unknown" if it does
    not replay."""
    small = minimize(factory, list(violation.program), invariant, capabilities,
                     budget=MINIMIZE_REPLAYS[profile_name()])
    if small is None:
        return Check(invariant, "unknown", calls, seconds,
                     note="failed once, then passed on replay (threads? a store that "
                          "depends on something outside the program)")
    v = small.violation
    found = Counterexample.of_violation(v, minimal=small.minimal)
    return Check(invariant, "fail", found.calls, seconds, found, str(v).splitlines()[0])


def check_store(name: str, factory: StoreFactory, *, expected: Iterable[str] = (),
                exact: bool = True, invariants: Iterable[str] | None = None,
                settings: Settings | None = None) -> StoreReport:
    settings = settings or machine_settings(database=None, report_multiple_bugs=False)
    report = StoreReport(name, frozenset(expected), exact)
    for invariant in invariants or INVARIANTS:
        report.checks.append(check_invariant(factory, invariant, settings, restart_all=True))
    return report


def check_many(stores: Sequence[tuple[str, StoreFactory, frozenset[str], bool]], *,
               invariants: Iterable[str] | None = None, settings: Settings | None = None,
               jobs: int = 1, progress: Callable[[str, Check], None] | None = None
               ) -> list[StoreReport]:
    """Check every (store, invariant) pair, `jobs` at a time in separate processes (each
    pair is independent, and a pair that fails spends most of its time shrinking)."""
    settings = settings or machine_settings(database=None)
    ids = list(invariants or INVARIANTS)
    reports = [StoreReport(name, expected, exact) for name, _, expected, exact in stores]
    tasks = [(i, iid) for i in range(len(stores)) for iid in ids]
    results: dict[tuple[int, str], Check] = {}
    if jobs <= 1:
        for i, iid in tasks:
            results[i, iid] = check_invariant(stores[i][1], iid, settings, restart_all=True,
                                              programs=corpus(iid))
            if progress:
                progress(stores[i][0], results[i, iid])
    else:
        context = multiprocessing.get_context("spawn")  # no threads inherited by a fork
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(check_invariant, stores[i][1], iid, settings,
                                   restart_all=True, programs=corpus(iid)): (i, iid)
                       for i, iid in tasks}
            for future in as_completed(futures):
                i, iid = futures[future]
                results[i, iid] = future.result()
                if progress:
                    progress(stores[i][0], results[i, iid])
    for i, iid in tasks:
        reports[i].checks.append(results[i, iid])
    return reports


def skipped_checks(caps: Capabilities) -> list[Check]:
    """The checks a store's declared capabilities leave out, as verdicts."""
    return [Check(i, "skipped", 0, 0.0, note=f"not checked: the store {why}")
            for i, why in caps.skipped().items()]


def to_json(reports: Sequence[StoreReport]) -> dict[str, Any]:
    return {"stores": [{"name": r.name, "expected_failures": sorted(r.expected),
                        "checks": [c.to_json() for c in r.checks]} for r in reports]}


def render(reports: Sequence[StoreReport], out: Console | None = None, *,
           title: str | None = None, expected: bool = True) -> None:
    """Invariants down, stores across: a cell is pass, or FAIL with the shrunk program's
    length in calls (its program follows the table), unknown or skip. `title`: the
    table's, if not verify's. `expected`: a last row saying whether each store broke what
    it is known to and nothing else (meaningless for a store with no known defects, as
    in `conform`, where every check must pass)."""
    out = out or console()
    ids = [i for i in INVARIANTS if any(c.invariant == i for r in reports for c in r.checks)]
    # Invariant titles only where they fit beside the stores (80 columns: ids alone; the
    # titles are in `runbound --help` and specs/invariants.md).
    wide = out.width >= 60 + 10 * len(reports)
    table = Table(title=title or "verdicts: invariant x store", box=box.SIMPLE_HEAD)
    table.add_column("invariant" if wide else "", max_width=48, no_wrap=not wide)
    for report in reports:
        table.add_column(report.name, justify="center", no_wrap=True)
    cells = {(r.name, c.invariant): c for r in reports for c in r.checks}
    for iid in ids:
        row = [f"{iid} {INVARIANTS[iid].title}" if wide else iid]
        for report in reports:
            check = cells.get((report.name, iid))
            if check is None:
                row.append("")
            elif check.verdict == "pass":
                row.append("[green]pass[/]")
            elif check.verdict == "fail":  # the program's length in calls
                row.append(f"[red]FAIL[/] {check.steps}")
            elif check.verdict == "skipped":
                row.append("[dim]skip[/]")
            else:
                row.append("[yellow]unknown[/]")
        table.add_row(*row)
    table.caption = "FAIL n: a counterexample of n calls, below"
    if expected:
        table.add_row("expected", *("[green]yes[/]" if r.as_expected else "[red bold]NO[/]"
                                    for r in reports))
        table.caption += "; expected: the store breaks what it is known to, and nothing else"
    out.print(table)
    for report in reports:
        for check in report.checks:
            if check.verdict == "fail" and check.counterexample is not None:
                out.print(f"\n[bold]{escape(report.name)}[/] breaks", highlight=False)
                out.print(cx.render(check.counterexample, indent="  "), markup=False,
                          highlight=False)
            elif check.verdict == "unknown":
                out.print(f"[bold]{escape(report.name)}[/] {check.invariant}: unknown: "
                          f"{escape(check.note)}")
