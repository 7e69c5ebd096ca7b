"""Recording a live store's calls (runbound/record.py) and checking the log against the
model (model/check/log.py, `runbound check-log`): a correct store's log checks clean, a broken
store's and an edited one fail at the call no order can place, and a log not of the format
is a typed error naming its line."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from unittest import mock

import pytest

from runbound.cli import main
from runbound.model.check import log as log_checker
from runbound.model.check.log import LogError, check_log, report
from runbound.model.clock import VirtualClock
from runbound.model.errors import RunboundError
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.record import Recording, record, recorded
from runbound.reference.broken import EvictsActiveStore
from runbound.reference.memory import MemoryRunStore
from runbound.reference.sqlite import on_disk

#: real time on a real clock: a TTL and a lease short enough to run out during the test
LIVE_POLICY = Policy(ttl=0.02, stale_after=0.05, max_terminal=4, max_active=6,
                     max_events_per_run=2)


def _traffic(store: Recording, seed: int, calls: int, gate: threading.Barrier) -> None:
    rng = random.Random(seed)
    gate.wait(30.0)  # a guard only
    for _ in range(calls):
        rid = rng.choice("abcdefg")
        op = rng.choice(("start", "start", "transition", "transition", "heartbeat",
                         "append_event", "get", "list_runs", "prune"))
        try:
            if op == "transition":
                store.transition(rid, rng.choice(list(Status)))
            elif op == "append_event":
                store.append_event(rid, "e")
            elif op == "list_runs":
                page = store.list_runs(rng.randint(1, 3))
                if page.next_cursor is not None:
                    store.list_runs(2, None, page.next_cursor)
            elif op == "prune":
                store.prune()
            else:
                getattr(store, op)(rid)
        except RunboundError:
            pass  # a refusal is a result, and it is in the log


def _record_threads(path: Path, factory: object, threads: int, calls: int) -> None:
    store, clock = recorded(factory)(LIVE_POLICY, time.time)  # type: ignore[arg-type]
    with record(store, path, clock=clock, name="under test") as live:
        gate = threading.Barrier(threads)
        workers = [threading.Thread(target=_traffic, args=(live, seed, calls, gate))
                   for seed in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60.0)
        live.close()


def test_record_sqlite_on_disk_under_8_threads_checks_clean(tmp_path: Path) -> None:
    """8 threads on the SQLite store, on disk, on the wall clock: every call is in the
    log, calls did run at once, and an order of them fits the model."""
    log = tmp_path / "sqlite.log"
    _record_threads(log, on_disk, threads=8, calls=40)
    lines = log.read_text().splitlines()
    assert json.loads(lines[0])["store"] == "under test"
    verdict = check_log(log)
    assert verdict.verdict == "pass", "\n".join(report(verdict))
    calls = [line for line in lines[1:] if '"op"' in line]
    assert verdict.calls == len(calls) >= 8 * 40 + 1
    assert verdict.max_running > 1  # the concurrent path was exercised, not only replay
    assert main(["check-log", str(log)]) == 0


def _evicting_log(path: Path) -> None:
    """The broken store evicts the oldest started run, active or not, at the cap."""
    clock = VirtualClock(1000.0)
    store, recording_clock = recorded(EvictsActiveStore)(Policy(max_terminal=1), clock)
    with record(store, path, clock=recording_clock) as live:
        live.start("a")
        for rid in ("b", "c"):
            live.start(rid)
            live.transition(rid, "running")
            clock.advance(1.0)
            live.transition(rid, "completed")
        with pytest.raises(RunboundError):
            live.get("a")  # evicted while active: the model still has it


def test_broken_store_log_fails_with_the_window_around_the_violation(tmp_path: Path
                                                                    ) -> None:
    log = tmp_path / "broken.log"
    _evicting_log(log)
    verdict = check_log(log)
    assert verdict.verdict == "fail"
    assert verdict.culprit is not None and verdict.culprit.op == "get"
    assert "UnknownRun" in verdict.note and "Run('a', 'pending')" in verdict.note
    assert [e.op for e in verdict.window][-3:] == ["transition", "transition", "get"]
    out = tmp_path / "timelines"
    assert main(["check-log", str(log), "--out", str(out)]) == 1
    assert (out / "broken.html").exists() and (out / "broken.porcupine.json").exists()


def _clean_log(path: Path) -> None:
    clock = VirtualClock(1000.0)
    store, recording_clock = recorded(MemoryRunStore)(Policy(ttl=5.0), clock)
    with record(store, path, clock=recording_clock) as live:
        live.start("a")
        live.transition("a", "running")
        live.get("a")
        live.transition("a", "completed")
        clock.advance(10.0)
        with pytest.raises(RunboundError):
            live.get("a")  # past its TTL: the log's readings drive it


def test_hand_edited_result_the_model_cannot_give_fails(tmp_path: Path) -> None:
    log = tmp_path / "edited.log"
    _clean_log(log)
    assert check_log(log).verdict == "pass"
    lines = log.read_text().splitlines(keepends=True)
    edited = json.loads(lines[4])
    assert edited["op"] == "get"
    edited["ok"]["run"]["status"] = "pending"  # it was running
    lines[4] = json.dumps(edited) + "\n"
    log.write_text("".join(lines))
    verdict = check_log(log)
    assert verdict.verdict == "fail" and verdict.culprit is not None
    assert verdict.culprit.line == 5 and "Run('a', 'running')" in verdict.note
    out = json.loads(_cli_json(log, tmp_path))
    assert out["verdict"] == "fail" and out["culprit"] == 5


def _cli_json(log: Path, tmp_path: Path) -> str:
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        main(["check-log", str(log), "--json", "--out", str(tmp_path / "t")])
    return text.getvalue()


def test_expiry_in_the_log_is_judged_by_its_clock_readings(tmp_path: Path) -> None:
    """The same calls, with the TTL read differently: a get past the TTL that still saw
    the run fails."""
    log = tmp_path / "ttl.log"
    _clean_log(log)
    lines = log.read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])
    assert last["op"] == "get" and last["err"]["class"] == "UnknownRun"
    del last["err"]
    last["ok"] = json.loads(lines[4])["ok"]  # "still there", 10 s after a 5 s TTL began
    last["ok"]["run"]["status"] = "completed"
    lines[-1] = json.dumps(last) + "\n"
    log.write_text("".join(lines))
    verdict = check_log(log)
    assert verdict.verdict == "fail" and "UnknownRun" in verdict.note


@pytest.mark.parametrize(("damage", "line", "rule"), [
    (lambda text: text[:-25], 7, "LOG2: the line is cut short"),
    (lambda text: text.replace('"op": "get"', '"op": "get', 1), 5, "LOG2"),
    (lambda text: text.replace('"op": "get"', '"op": "fetch"', 1), 5, "no operation"),
    (lambda text: text.replace('{"thread": 0', '{"thread": 1', 1), 3, "LOG4"),
    (lambda text: text.replace('"runbound_log": 1', '"runbound_log": 9'), 1, "LOG1"),
    (lambda text: text.replace('"clock_readings": true', '"clock_readings": false'), 1,
     "LOG3"),
])
def test_malformed_log_is_a_typed_error_naming_the_line(tmp_path: Path, damage: object,
                                                       line: int, rule: str) -> None:
    log = tmp_path / "bad.log"
    _clean_log(log)
    log.write_text(damage(log.read_text()))  # type: ignore[operator]
    with pytest.raises(LogError) as caught:
        check_log(log)
    assert caught.value.line == line and isinstance(caught.value, RunboundError)
    assert f"line {line}" in str(caught.value) and rule in str(caught.value)
    assert main(["check-log", str(log)]) == 2


def test_a_started_worker_makes_the_rest_unknown_never_a_pass(tmp_path: Path) -> None:
    """The worker's sweeps are not calls of the log: what follows cannot be judged."""
    log = tmp_path / "worker.log"
    clock = VirtualClock(1000.0)
    store, recording_clock = recorded(MemoryRunStore)(Policy(ttl=1.0), clock)
    with record(store, log, clock=recording_clock) as live:
        live.start("a")
        assert live.start_cleanup_worker(1.0)
        live.get("a")
        live.close()
    verdict = check_log(log)
    assert verdict.verdict == "unknown" and "cleanup worker" in verdict.note
    assert main(["check-log", str(log)]) == 1
    assert main(["check-log", str(log), "--allow-unknown"]) == 0


def test_a_search_over_its_budget_is_unknown_never_a_pass(tmp_path: Path) -> None:
    """Two starts running at once need a search (either may be first); one allowed no
    placement at all stops there with "unknown" (the CLI exits 1), where the full budget
    passes the log."""
    log = tmp_path / "overlap.log"
    none = {"ttl": None, "max_terminal": None, "max_active": None,
            "max_events_per_run": None, "stale_after": None, "sweep": "lazy"}
    lines = [{"runbound_log": 1, "store": "hand-written", "clock_readings": True,
              "policy": none}, {"thread": 0, "at": 0}, {"thread": 1, "at": 0}]
    for t, rid, inv, ret in ((0, "a", 1_000, 3_000), (1, "b", 2_000, 4_000)):
        run = {"run_id": rid, "status": "pending", "created_at": 5.0, "updated_at": 5.0,
               "terminated_at": None, "events": [], "dropped_events": 0}
        lines.append({"t": t, "op": "start", "args": [rid], "inv": inv, "ret": ret,
                      "wall_inv": 0.0, "wall_ret": 0.0, "now": 5.0, "ok": {"run": run}})
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    whole = check_log(log)
    assert whole.verdict == "pass" and whole.max_running == 2, whole
    with mock.patch.object(log_checker, "BUDGET", 0):
        verdict = check_log(log)
        assert main(["check-log", str(log)]) == 1
    assert verdict.verdict == "unknown" and "placements tried" in verdict.note, verdict
    assert verdict.calls < whole.calls  # the rest of the log is not checked
