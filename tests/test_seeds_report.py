"""specs/seeds.md holds: every counterexample in it, replayed, still breaks the replica,
and the fixed version survives it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runbound import seeds_report as report
from runbound.model.check import counterexample as cx
from runbound.model.check.counterexample import Counterexample
from runbound.model.check.linearizability import stress
from runbound.model.check.probes import PROBES
from runbound.model.check.replay import replay_counterexample
from runbound.model.files import SPECS
from runbound.model.invariants import INVARIANTS
from runbound.model.protocol import StoreFactory
from runbound.reference.seeds.s1_adapter import FixedS1Store, S1Store
from runbound.reference.seeds.s2_adapter import FixedS2Store, S2Store

ROWS: list[dict[str, Any]] = json.loads((SPECS / "seeds.json").read_text())
STORES: dict[str, tuple[StoreFactory, StoreFactory]] = {
    "S1": (S1Store, FixedS1Store), "S2": (S2Store, FixedS2Store)}
FAILED = [r for r in ROWS if r["replica"] == "fail"]


def test_seeds_markdown_is_generated_from_the_json() -> None:
    assert (SPECS / "seeds.md").read_text() == report.render_markdown(ROWS)


def test_every_named_defect_has_a_counterexample() -> None:
    """The defects the reviews name are all found (the issue's list)."""
    found = {(r["seed"], r["invariant"]) for r in FAILED}
    for key in [("S1", i) for i in ("I2", "I3", "I11", "I15", "I16", "I17", "I18")] + \
               [("S2", i) for i in ("I3", "I17")]:
        assert key in found, key


@pytest.mark.parametrize("row", FAILED, ids=[f"{r['seed']}-{r['invariant']}" for r in FAILED])
def test_counterexample_replays(row: dict[str, Any]) -> None:
    """Each committed counterexample, read in its one JSON form: a program breaks the
    replica again, with the same call and results, and not the fix; a probe or a
    concurrent history (no program to replay) is run again."""
    replica, fixed = STORES[row["seed"]]
    iid = row["invariant"]
    found = report.counterexample(row)
    assert found is not None and found.invariant == iid
    if found.kind == "history":
        verdict = stress(replica)[0]
        assert verdict.verdict == "fail" and verdict.culprit is not None
        assert [c.culprit for c in found.history].count(True) == 1
        return
    if found.kind == "probe":  # the probes the registry names for it, run again
        probes = [PROBES[c] for c in INVARIANTS[iid].checkers if c in PROBES]
        assert probes, f"{iid}'s probe counterexample, but the registry names no probe"
        assert any(probe(replica).verdict == "fail" for probe in probes)
        assert all(probe(fixed).verdict == "pass" for probe in probes)
        return
    violation = replay_counterexample(replica, found)
    assert violation is not None and violation.invariant == iid
    again = Counterexample.of_violation(violation, minimal=found.minimal)
    assert again.differed == found.differed  # what differed, differs the same way
    if iid not in report.NOT_FIXED:
        assert replay_counterexample(fixed, found) is None


def test_the_markdown_shows_each_program_below_its_table() -> None:
    text = (SPECS / "seeds.md").read_text()
    assert "<Status." not in text and "counterexample_program" not in text
    for row in FAILED:
        found = report.counterexample(row)
        assert found is not None
        block = f"### {row['seed']} {row['invariant']}\n\n{cx.render(found, markdown=True)}"
        assert block in text, row
    for line in text.splitlines():  # short cells: the programs are not in the tables
        if line.startswith("| I"):
            assert len(line) < 260 and "```" not in line, line


def test_report_paths_exist() -> None:
    assert Path(SPECS / "seeds.md").exists()
