"""specs/seeds.md holds: every counterexample in it, replayed, still breaks the replica,
and the fixed version survives it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model.linearizability import stress
from model.probes import probe_failing_sweeps, probe_start_race
from model.protocol import StoreFactory
from model.replay import replay
from reference.seeds import report
from reference.seeds.adapters import FixedS1Store, FixedS2Store, S1Store, S2Store

ROWS: list[dict[str, Any]] = json.loads((report.SPECS / "seeds.json").read_text())
STORES: dict[str, tuple[StoreFactory, StoreFactory]] = {
    "S1": (S1Store, FixedS1Store), "S2": (S2Store, FixedS2Store)}
FAILED = [r for r in ROWS if r["replica"] == "fail"]


def test_seeds_markdown_is_generated_from_the_json() -> None:
    assert (report.SPECS / "seeds.md").read_text() == report.render_markdown(ROWS)


def test_every_named_defect_has_a_counterexample() -> None:
    """The defects the reviews name are all found (the issue's list)."""
    found = {(r["seed"], r["invariant"]) for r in FAILED}
    for key in [("S1", i) for i in ("I2", "I3", "I11", "I15", "I16", "I17", "I18")] + \
               [("S2", i) for i in ("I3", "I17")]:
        assert key in found, key


@pytest.mark.parametrize("row", FAILED, ids=[f"{r['seed']}-{r['invariant']}" for r in FAILED])
def test_counterexample_replays(row: dict[str, Any]) -> None:
    replica, fixed = STORES[row["seed"]]
    iid = row["invariant"]
    if iid == "I11" and row["counterexample_program"] is None:
        assert probe_start_race(replica).verdict == "fail"
        assert probe_start_race(fixed).verdict == "pass"
        return
    if iid == "I19":
        assert stress(replica)[0].verdict == "fail"
        return
    if iid == "I18":
        assert probe_failing_sweeps(replica).verdict == "fail"
        assert probe_failing_sweeps(fixed).verdict == "pass"
        return
    program = row["counterexample_program"]
    violation = replay(replica, program, {iid})
    assert violation is not None and violation.invariant == iid
    if iid not in report.NOT_FIXED:
        assert replay(fixed, program, {iid}) is None


def test_report_paths_exist() -> None:
    assert Path(report.SPECS / "seeds.md").exists()
