"""The one counterexample type: its JSON form round-trips and is versioned, old conform
traces still read, the renderer shows what a person needs (statuses by their values,
what differed), and `runbound seeds --check` fails on a committed file that is not what
the code writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from runbound import seeds_report
from runbound.cli import main
from runbound.model.calls import policy_to_json, shown
from runbound.model.check import counterexample as cx
from runbound.model.check.counterexample import (
    BadCounterexample,
    Counterexample,
    Differed,
    HistoryCall,
)
from runbound.model.files import SPECS
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.records import Run

PROGRAM: list[dict[str, Any]] = [{"op": "setup", "policy": policy_to_json(Policy(max_terminal=0))},
           {"op": "start", "args": ["a"]},
           {"op": "transition", "args": ["a", "cancelled"]}]
RUN = Run("a", Status.CANCELLED, 1000.0, 1000.0, 1000.0)


def program() -> Counterexample:
    return Counterexample.of_program("I1", PROGRAM, Differed(
        "1 terminal runs retained, max_terminal is 0", "transition('a', 'cancelled')",
        shown(RUN), shown(RUN)), minimal=True)


def history() -> Counterexample:
    return Counterexample("I19", "history", Differed("race", "start('a')", "UnknownRun",
                                                     shown(RUN)),
                          policy=policy_to_json(Policy(max_active=2)), history=(
        HistoryCall(1, "start('a')", "Run('a', 'running')", 0, 900),
        HistoryCall(2, "get('a')", "UnknownRun", 100, 500, culprit=True)), minimal=True,
        timeline="out/timelines/x.html")


def probe() -> Counterexample:
    return Counterexample("I18", "probe", Differed("I18: 3600 log lines"),
                          steps=("store = factory(Policy(ttl=60.0), VirtualClock())",
                                 "clock.fault(nan)"))


@pytest.mark.parametrize("make", [program, history, probe])
def test_json_round_trip(make: Any, tmp_path: Path) -> None:
    found = make()
    again = cx.from_json(json.loads(json.dumps(cx.to_json(found))))
    assert again == found
    assert cx.read(cx.write(found, tmp_path / "cx.json")) == found


def test_the_policy_of_a_program_is_its_setup() -> None:
    assert program().policy == PROGRAM[0]["policy"]
    assert program().calls == 2 and program().replayable and not history().replayable


def test_other_formats_are_refused_by_a_typed_error(tmp_path: Path) -> None:
    data = {**cx.to_json(program()), "runbound_counterexample": 2}
    with pytest.raises(BadCounterexample, match=r"CX1: .*format 2, this code reads format 1"):
        cx.from_json(data)
    with pytest.raises(BadCounterexample, match="CX1"):
        cx.from_json({"runbound_counterexample": 1, "invariant": "I1"})
    with pytest.raises(BadCounterexample, match="a program begins with its set-up"):
        Counterexample.of_program("I1", PROGRAM[1:], Differed("x"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BadCounterexample, match=r"bad\.json: not JSON"):
        cx.read(tmp_path / "bad.json")


def test_a_trace_of_conform_before_format_1_still_reads() -> None:
    old = {"factory": "pkg.mod:factory", "invariant": "I1", "message": "I1 broken",
           "program": PROGRAM}
    found = cx.from_json(old)
    assert (found.factory, found.program, found.differed.seen) == (
        "pkg.mod:factory", tuple(PROGRAM), "I1 broken")


def test_the_renderer_shows_statuses_by_value_and_what_differed() -> None:
    text = cx.render(program())
    assert text.splitlines()[:2] == [
        "I1 broken (terminal runs retained <= max_terminal): 1 terminal runs retained, "
        "max_terminal is 0", "program, 2 calls (1-minimal):"]
    assert "    transition('a', 'cancelled')" in text
    # the call's result was the model's: said once, not as two equal lines
    assert "# seen after transition('a', 'cancelled') (its result was the model's)" in text
    running = Run("a", Status.RUNNING, 1000.0, 1000.0, None)
    differs = cx.render(Counterexample.of_program("I13", PROGRAM, Differed(
        "x", "start('a')", shown(RUN), shown(running))))
    assert "<Status" not in differs
    assert "#   model: Run(run_id='a', status='cancelled', " in differs
    assert "#   store: Run(run_id='a', status='running', " in differs
    fenced = cx.render(program(), markdown=True).splitlines()
    assert fenced[2:4] == ["", "```text"] and fenced[-1] == "```"


def test_a_history_shows_the_order_of_events_not_nanoseconds() -> None:
    block = cx.lines(history())
    assert block[0] == "# policy Policy(max_active=2), clock frozen"
    # invoked 0, 100; returned 500, 900: events 1..4, and the get overlaps the start
    assert block[1].endswith("[1..4]") and block[2].endswith("[2..3]  <- here")
    assert "# as a timeline: out/timelines/x.html" in block


# --- the seeds report: no strings parsed, drift caught ----------------------------------

def _verify_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A verify --json from which the report writes `rows`."""
    stores: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        stores.setdefault(f"seed:{r['seed']}", []).append(
            {"invariant": r["invariant"], "verdict": r["replica"],
             "counterexample": r["counterexample"]})
        if r["fixed"] is not None:
            stores.setdefault(f"fixed:{r['seed']}", []).append(
                {"invariant": r["invariant"], "verdict": r["fixed"], "counterexample": None})
    return {"stores": [{"name": n, "checks": c} for n, c in stores.items()]}


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The committed seeds files, in a directory of their own."""
    for name in ("seeds.json", "seeds.md"):
        shutil.copy(SPECS / name, tmp_path / name)
    monkeypatch.setattr(seeds_report, "SPECS", tmp_path)
    return tmp_path


def test_the_committed_seeds_files_are_what_the_code_writes(specs: Path) -> None:
    rows = json.loads((specs / "seeds.json").read_text())
    assert seeds_report.rows_from_verify(_verify_json(rows)) == rows
    assert (specs / "seeds.md").read_text() == seeds_report.render_markdown(rows)
    source = specs / "verify.json"
    source.write_text(json.dumps(_verify_json(rows)))
    assert seeds_report.differences(source) == ([], [])
    assert main(["seeds", "--check", "--from", str(source)]) == 0


def test_seeds_check_fails_on_an_edited_file(specs: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rows = json.loads((specs / "seeds.json").read_text())
    source = specs / "verify.json"
    source.write_text(json.dumps(_verify_json(rows)))
    md = specs / "seeds.md"
    md.write_text(md.read_text().replace("| pass |", "| pass (edited) |", 1))
    errors, _ = seeds_report.differences(source)
    assert len(errors) == 1 and "specs/seeds.md is not what" in errors[0]
    assert "+| " in errors[0] and "(edited)" in errors[0]  # the diff is shown
    assert main(["seeds", "--check", "--from", str(source)]) == 1
    assert "specs/seeds.md is not what" in capsys.readouterr().err


def test_seeds_check_fails_when_a_new_run_finds_another_program(specs: Path) -> None:
    rows = json.loads((specs / "seeds.json").read_text())
    row = next(r for r in rows if (r["counterexample"] or {}).get("kind") == "program")
    fresh = json.loads(json.dumps(rows))
    changed = next(r for r in fresh if r["invariant"] == row["invariant"]
                   and r["seed"] == row["seed"])
    changed["counterexample"]["program"].append({"op": "prune", "args": []})
    source = specs / "verify.json"
    source.write_text(json.dumps(_verify_json(fresh)))
    errors, _ = seeds_report.differences(source)
    assert len(errors) == 1 and "the counterexample differs" in errors[0]
    assert "+    prune()" in errors[0]
