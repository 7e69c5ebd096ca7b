"""`runbound verify`: hold stores to the model and tabulate the verdicts.

Each (store, invariant) pair is its own stateful run that raises on that invariant only,
so a common violation cannot mask a rarer one and each gets its own shrunk
counterexample. A verdict is "pass" (the budget ran out with no violation), "fail"
(with the shrunk program, its length, and the seconds until the first violation was
seen, before shrinking), or "unknown" (the check itself could not run to an answer).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hypothesis import errors as hypothesis_errors
from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test
from rich.console import Console
from rich.table import Table

from model.invariants import INVARIANTS, InvariantViolation
from model.protocol import StoreFactory
from model.stateful import machine_for, machine_settings

Verdict = Literal["pass", "fail", "unknown"]


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


@dataclass
class StoreReport:
    name: str
    #: the invariants the store is known to break: none for a store that must conform;
    #: a replica's documented defects; a broken store's planted one
    expected: frozenset[str] = frozenset()
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> set[str]:
        return {c.invariant for c in self.checks if c.verdict == "fail"}

    @property
    def as_expected(self) -> bool:
        """A conforming store fails nothing; any other fails at least every known defect
        among the invariants checked (and may fail more: the checker reports them)."""
        checked = {c.invariant for c in self.checks}
        if not self.expected:
            return not self.failed
        return (self.expected & checked) <= self.failed


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def check_invariant(factory: StoreFactory, invariant: str, settings: Settings) -> Check:
    machine = machine_for(factory, enforce={invariant})
    calls = 0
    original = machine._do

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *args, **kwargs)

    machine._do = counted  # type: ignore[method-assign]
    began = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=settings)
    except InvariantViolation as violation:
        found = machine.first_seen.get(invariant, time.perf_counter())
        trace = list(violation.trace)
        return Check(invariant, "fail", max(len(trace) - 1, 0), round(found - began, 3),
                     trace, str(violation).splitlines()[0])
    except hypothesis_errors.Flaky as flaky:
        return Check(invariant, "unknown", calls, round(time.perf_counter() - began, 3),
                     note=f"not reproducible (threads?): {str(flaky).splitlines()[0]}")
    except Exception as error:  # the check could not run: say so, never call it a pass
        return Check(invariant, "unknown", calls, round(time.perf_counter() - began, 3),
                     note=f"{type(error).__name__}: {error}"[:300])
    return Check(invariant, "pass", calls, round(time.perf_counter() - began, 3))


def check_store(name: str, factory: StoreFactory, *, expected: Iterable[str] = (),
                invariants: Iterable[str] | None = None,
                settings: Settings | None = None) -> StoreReport:
    settings = settings or machine_settings(database=None)
    report = StoreReport(name, frozenset(expected))
    for invariant in invariants or INVARIANTS:
        report.checks.append(check_invariant(factory, invariant, settings))
    return report


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
            else:
                row.append("[yellow]unknown[/]")
        table.add_row(*row)
    table.add_row("as expected", *("[green]yes[/]" if r.as_expected else "[red bold]NO[/]"
                                   for r in reports))
    out.print(table)
    for report in reports:
        for check in report.checks:
            if check.verdict == "fail" and check.counterexample:
                out.print(f"\n[bold]{report.name}[/] breaks [red]{check.invariant}[/] "
                              f"({INVARIANTS[check.invariant].title}); shortest program "
                              f"found, {check.steps} calls:")
                for line in check.counterexample:
                    out.print(f"    {line}", markup=False, highlight=False)
            elif check.verdict == "unknown":
                out.print(f"\n[bold]{report.name}[/] {check.invariant}: unknown: "
                              f"{check.note}", markup=False)
