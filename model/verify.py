"""`runbound verify`: hold stores to the model and tabulate the verdicts.

Each (store, invariant) pair is its own stateful run that raises on that invariant only,
so a common violation cannot mask a rarer one and each gets its own shrunk
counterexample. A verdict is "pass" (the budget ran out with no violation), "fail"
(with the shrunk program, its length, and the seconds until the first violation was
seen, before shrinking), or "unknown" (the check itself could not run to an answer).
"""

from __future__ import annotations

import json
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
    conforms: bool  # what the store is expected to do: pass everything, or not
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "fail"]

    @property
    def as_expected(self) -> bool:
        return not self.failed if self.conforms else bool(self.failed)


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


def check_store(name: str, factory: StoreFactory, *, conforms: bool = True,
                invariants: Iterable[str] | None = None,
                settings: Settings | None = None) -> StoreReport:
    settings = settings or machine_settings(database=None)
    report = StoreReport(name, conforms)
    for invariant in invariants or INVARIANTS:
        report.checks.append(check_invariant(factory, invariant, settings))
    return report


def to_json(reports: Sequence[StoreReport]) -> dict[str, Any]:
    return {"stores": [{"name": r.name, "conforms": r.conforms,
                        "checks": [asdict(c) for c in r.checks]} for r in reports]}


def write_json(reports: Sequence[StoreReport], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(reports), indent=2) + "\n")


def render(reports: Sequence[StoreReport], console: Console | None = None) -> None:
    console = console or Console()
    ids = [i for i in INVARIANTS if any(c.invariant == i for r in reports for c in r.checks)]
    table = Table(title="runbound verify: store x invariant", show_lines=False)
    table.add_column("store", style="bold")
    for iid in ids:
        table.add_column(iid, justify="center")
    table.add_column("as expected", justify="center")
    for report in reports:
        cells = {c.invariant: c for c in report.checks}
        row = [report.name]
        for iid in ids:
            check = cells.get(iid)
            if check is None:
                row.append("")
            elif check.verdict == "pass":
                row.append("[green]pass[/]")
            elif check.verdict == "fail":
                row.append(f"[red]FAIL[/]\n{check.steps} st\n{check.seconds:.2f}s")
            else:
                row.append("[yellow]?[/]")
        row.append("[green]yes[/]" if report.as_expected else "[red bold]NO[/]")
        table.add_row(*row)
    console.print(table)
    console.print("  " + "; ".join(f"{i}: {INVARIANTS[i].title}" for i in ids))
    for report in reports:
        for check in report.checks:
            if check.verdict == "fail" and check.counterexample:
                console.print(f"\n[bold]{report.name}[/] breaks [red]{check.invariant}[/] "
                              f"({INVARIANTS[check.invariant].title}); shortest program "
                              f"found, {check.steps} calls:")
                for line in check.counterexample:
                    console.print(f"    {line}", markup=False, highlight=False)
            elif check.verdict == "unknown":
                console.print(f"\n[bold]{report.name}[/] {check.invariant}: unknown: "
                              f"{check.note}", markup=False)
