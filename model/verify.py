"""`runbound verify`: hold stores to the model and tabulate the verdicts.

Each (store, invariant) pair is its own stateful run that raises on that invariant only,
so a common violation cannot mask a rarer one and each gets its own counterexample. A
verdict is:
- "pass": the budget ran out with no violation;
- "fail": with the program, made 1-minimal by replay (`model.minimize`), its length, the
  seconds until the first violation was seen, and what differed;
- "unknown": the check could not run to an answer (a store it could not build or drive,
  a race window never exercised, a search budget spent). Never a pass: it fails a run
  unless the user tolerates it;
- "skipped": left out because the store declares it lacks what the check needs.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hypothesis import Phase, Verbosity
from hypothesis import errors as hypothesis_errors
from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from model import linearizability, probes
from model.capabilities import Capabilities, capabilities_of
from model.invariants import INVARIANTS, InvariantViolation
from model.minimize import minimize, run_program
from model.protocol import StoreFactory
from model.stateful import (
    MINIMIZE_REPLAYS,
    CheckUnknown,
    machine_for,
    machine_settings,
    probe_programs,
    profile_name,
)

Verdict = Literal["pass", "fail", "unknown", "skipped"]


@dataclass
class Check:
    invariant: str
    verdict: Verdict
    #: calls in the shrunk counterexample, or calls made in all when it passed
    steps: int
    #: seconds until the first violation was seen; the whole run when it passed
    seconds: float
    counterexample: list[str] | None = None
    note: str = ""
    #: the counterexample as data, for `model.replay.replay` (stateful checks only)
    counterexample_program: list[dict[str, Any]] | None = None
    #: what was seen: the model's result against the store's, or the broken bound
    differed: str = ""
    #: the program is 1-minimal (every single step was tried away); False: the
    #: minimizer's budget ran out first
    minimal: bool = False


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
CORPUS = Path(__file__).resolve().parent.parent / "specs" / "seeds.json"


def corpus(invariant: str, path: Path = CORPUS) -> list[list[dict[str, Any]]]:
    """The committed programs that broke `invariant` in some store (none if the file is
    absent, as in an installed wheel)."""
    if not path.exists():
        return []
    rows = json.loads(path.read_text())
    return [row["counterexample_program"] for row in rows
            if row.get("invariant") == invariant and row.get("counterexample_program")]


def check_invariant(factory: StoreFactory, invariant: str, settings: Settings,
                    capabilities: Any = None, *, restart_all: bool = False,
                    programs: Sequence[Sequence[dict[str, Any]]] = ()) -> Check:
    """One verdict. I18 is a probe; I11 is the stateful run, then the start-race probe
    (a pass needs both: a race never exercised leaves it unknown); I17 is the stateful
    run with `restart` among its rules; the rest, the stateful run. A check the store's
    declared capabilities leave out is "skipped". `restart_all`: check I17 whatever the
    store declares (`verify`'s table shows which stores keep their runs). `programs`:
    replayed before the search (a corpus of earlier counterexamples)."""
    caps = capabilities if capabilities is not None else capabilities_of(factory)
    why = None if restart_all and invariant == "I17" else caps.skipped().get(invariant)
    if why is not None:
        return Check(invariant, "skipped", 0, 0.0, note=f"not checked: the store {why}")
    if invariant == "I19":
        return _linearizable(factory, caps)
    if invariant == "I18":
        return _from_probe(invariant, lambda: probes.probe_failing_sweeps(factory))
    check = _stateful(factory, invariant, settings, caps, programs)
    if invariant == "I11" and check.verdict == "pass":
        race = _from_probe(invariant, lambda: probes.probe_start_race(factory))
        if race.verdict != "pass":
            race.seconds = round(race.seconds + check.seconds, 3)
            return race
        check.note = race.note
    return check


def _linearizable(factory: StoreFactory, capabilities: Capabilities) -> Check:
    """I19: threads call the store at once; each history must be linearizable."""
    began = time.perf_counter()
    verdict, history = linearizability.stress(factory)
    seconds = round(time.perf_counter() - began, 3)
    if verdict.verdict == "pass":
        return Check("I19", "pass", verdict.explored, seconds,
                     note=f"{verdict.overlapped} of {verdict.histories} histories had "
                          "overlapping calls")
    if verdict.verdict == "unknown":
        return Check("I19", "unknown", verdict.explored, seconds, note=verdict.note)
    if verdict.conflict:  # a race, shrunk to the calls that cannot be ordered
        return Check("I19", "fail", len(verdict.conflict), seconds,
                     [verdict.note, "# the calls that cannot be ordered, by invocation:",
                      *verdict.conflict], f"I19: {verdict.note}", differed=verdict.note,
                     minimal=True)
    shown = history[:20] + ([f"# ... {len(history) - 20} more calls"]
                            if len(history) > 20 else [])
    return Check("I19", "fail", len(history), seconds,
                 [verdict.note, *verdict.unordered, "# the history, by invocation:", *shown],
                 f"I19: {verdict.note}", differed=verdict.note)


def _from_probe(invariant: str, probe: Callable[[], probes.ProbeResult]) -> Check:
    began = time.perf_counter()
    result = probe()
    seconds = round(time.perf_counter() - began, 3)
    verdict: Verdict = "fail" if result.verdict == "fail" else (
        "pass" if result.verdict == "pass" else "unknown")
    return Check(invariant, verdict, len(result.steps), seconds,
                 result.steps if verdict == "fail" else None, result.message,
                 differed=result.message if verdict == "fail" else "")


def _stateful(factory: StoreFactory, invariant: str, settings: Settings,
              capabilities: Any = None, programs: Sequence[Sequence[dict[str, Any]]] = ()
              ) -> Check:
    durable = bool(getattr(capabilities, "durable", False))
    machine = machine_for(factory, enforce={invariant}, capabilities=capabilities,
                          restarts=invariant == "I17" or durable)
    began = time.perf_counter()
    for program in (*probe_programs(capabilities), *programs):
        try:
            replayed = run_program(factory, program, {invariant}, capabilities)
        except CheckUnknown:
            continue
        if replayed is not None:
            return _failed(factory, invariant, capabilities, replayed,
                           round(time.perf_counter() - began, 3), 0)
    try:
        # generation only: Hypothesis's shrinker is bounded by wall-clock seconds, ours
        # (model.minimize) by replays, so the same failure gives the same program on a
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
    return Check(invariant, "pass", machine.calls[0], round(time.perf_counter() - began, 3))


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
    return Check(invariant, "fail", max(len(v.trace) - 1, 0), seconds, list(v.trace),
                 str(v).splitlines()[0], list(v.program), v.differed, small.minimal)


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
                        "checks": [asdict(c) for c in r.checks]} for r in reports]}


def write_json(reports: Sequence[StoreReport], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(reports), indent=2) + "\n")


def render(reports: Sequence[StoreReport], out: Console | None = None) -> None:
    """Invariants down, stores across: a cell is pass, or FAIL with the shrunk program's
    length in calls and the seconds until the violation was first seen."""
    out = out or console()
    ids = [i for i in INVARIANTS if any(c.invariant == i for r in reports for c in r.checks)]
    table = Table(title="runbound verify: invariant x store")
    table.add_column("invariant", max_width=48)
    for report in reports:
        table.add_column(report.name, justify="center")
    cells = {(r.name, c.invariant): c for r in reports for c in r.checks}
    for iid in ids:
        row = [f"{iid} {INVARIANTS[iid].title}"]
        for report in reports:
            check = cells.get((report.name, iid))
            if check is None:
                row.append("")
            elif check.verdict == "pass":
                row.append("[green]pass[/]")
            elif check.verdict == "fail":
                row.append(f"[red]FAIL[/] {check.steps} calls, {check.seconds:.2f}s")
            elif check.verdict == "skipped":
                row.append("[dim]skipped[/]")
            else:
                row.append("[yellow]unknown[/]")
        table.add_row(*row)
    table.add_row("as expected", *("[green]yes[/]" if r.as_expected else "[red bold]NO[/]"
                                   for r in reports))
    out.print(table)
    for report in reports:
        for check in report.checks:
            if check.verdict == "fail" and check.counterexample:
                exact = ("1-minimal" if check.minimal else "minimizer budget spent"
                         if check.counterexample_program else "not a program")
                out.print(f"\n[bold]{escape(report.name)}[/] breaks "
                          f"[red]{check.invariant}[/] ({INVARIANTS[check.invariant].title})"
                          f": {escape(check.differed)}\n  program, {check.steps} calls "
                          f"({exact}):")
                for line in check.counterexample:
                    out.print(f"    {line}", markup=False, highlight=False)
            elif check.verdict == "unknown":
                out.print(f"[bold]{escape(report.name)}[/] {check.invariant}: unknown: "
                          f"{escape(check.note)}")
