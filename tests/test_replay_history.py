"""`runbound replay` on a concurrent history (an I19 failure, a failing log's window):
its calls are checked again against the model, no store runs. A failure reproduces (exit
1, rendered as verify renders it); the same file with the culprit's result made the
model's replays as a pass (exit 0: the replay checks, it does not echo the saved
verdict); a window the file cannot judge alone is "unknown", never a pass; a file not of
the format is a usage error (exit 2, one line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from runbound.cli import main
from runbound.model import spec
from runbound.model.calls import from_json
from runbound.model.check import counterexample as cx
from runbound.model.check import timeline, verify
from runbound.model.check.log import check_log, policy_from_json
from runbound.model.check.profiles import machine_settings
from runbound.model.clock import VirtualClock
from runbound.model.policy import Policy
from runbound.record import record, recorded
from runbound.reference.broken import RacyStore
from runbound.reference.memory import MemoryRunStore


def _replay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _i19_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """RacyStore's I19 failure as verify finds it: the counterexample, and the history
    written beside its timeline."""
    monkeypatch.setattr(verify, "TIMELINES", tmp_path / "timelines")
    check = verify.check_invariant(RacyStore, "I19", machine_settings())
    assert check.verdict == "fail" and check.counterexample is not None
    assert check.counterexample.kind == "history"
    found = cx.write(check.counterexample, tmp_path / "I19.json")
    return found, tmp_path / "timelines" / "I19-RacyStore.history.json"


def test_an_i19_failure_replays_as_the_same_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    found, history = _i19_failure(tmp_path, monkeypatch)
    saved = cx.read(found)
    for path in (found, history):
        code, out, err = _replay(capsys, str(path))
        assert code == 1 and not err
        assert out.startswith("fail: 2 calls of an I19 history")
        assert "race: no order of these 2 calls fits the model" in out
        assert cx.about(saved) in out and out.count("<- here") == 1
    # moved with its history beside it, away from where its timeline was written
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(found, moved)
    shutil.copy(history, moved)
    shutil.rmtree(tmp_path / "timelines")
    assert _replay(capsys, str(moved / "I19.json"))[0] == 1
    code, _, err = _replay(capsys, str(found))  # neither where named nor beside it
    assert code == 2 and "I19-RacyStore.history.json" in err


def _model_outcome(data: dict[str, Any]) -> dict[str, Any]:
    """What the model gives the culprit placed after the history's other calls (in
    invocation order), as the history file writes a result."""
    policy = policy_from_json(data["policy"])
    state = spec.initial(policy)
    calls = sorted(data["calls"], key=lambda c: c["inv"])
    (culprit,) = [c for c in calls if c["culprit"]]
    for c in [*(c for c in calls if c is not culprit), culprit]:
        state, result = spec.apply(state, c["op"], tuple(from_json(a) for a in c["args"]),
                                   data["now"])
    return timeline.outcome_to_json(result)


def test_the_culprit_given_the_models_result_replays_as_a_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, history = _i19_failure(tmp_path, monkeypatch)
    data = json.loads(history.read_text())
    (culprit,) = [c for c in data["calls"] if c["culprit"]]
    fixed = _model_outcome(data)
    assert fixed != {k: culprit[k] for k in ("ok", "err") if k in culprit}
    culprit.pop("ok", None)
    culprit.pop("err", None)
    culprit.update(fixed)  # the saved verdict, note and marks are left as they were
    history.write_text(json.dumps(data))
    code, out, err = _replay(capsys, str(history))
    assert code == 0 and not err
    assert out.startswith("pass: 2 calls of an I19 history")
    assert "does not reproduce" in out and "<- here" not in out


def _failing_log(path: Path, before: int) -> None:
    """`before` runs started, then run 'a' started, made running, read and completed;
    the read edited to a status nothing moved it to."""
    clock = VirtualClock(1000.0)
    store, recording_clock = recorded(MemoryRunStore)(Policy(ttl=5.0), clock)
    with record(store, path, clock=recording_clock) as live:
        for n in range(before):
            live.start(f"r{n}")
        live.start("a")
        live.transition("a", "running")
        live.get("a")
        live.transition("a", "completed")
    lines = path.read_text().splitlines(keepends=True)
    at = max(i for i, line in enumerate(lines) if '"op": "get"' in line)
    edited = json.loads(lines[at])
    edited["ok"]["run"]["status"] = "pending"  # it was running
    lines[at] = json.dumps(edited) + "\n"
    path.write_text("".join(lines))


def test_a_failing_logs_history_replays_as_a_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "edited.log"
    _failing_log(log, before=0)
    out_dir = tmp_path / "t"
    assert main(["check-log", str(log), "--out", str(out_dir)]) == 1
    capsys.readouterr()
    history = out_dir / "edited.history.json"
    code, out, err = _replay(capsys, str(history))
    assert code == 1 and not err
    assert out.startswith("fail: 3 calls of a log's window")
    assert "line 5: no order of the calls so far" in out and out.count("<- here") == 1
    # the get given the status the model gives: the window replays as a pass
    data = json.loads(history.read_text())
    (culprit,) = [c for c in data["calls"] if c["culprit"]]
    culprit["ok"]["run"]["status"] = "running"
    history.write_text(json.dumps(data))
    code, out, _ = _replay(capsys, str(history))
    assert code == 0 and out.startswith("pass: 3 calls")


def test_a_window_that_starts_mid_log_is_unknown_never_a_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its window leaves out calls checked before it: the model state they left is not in
    the file, so the replay cannot decide (from an empty store, 'a' would not exist)."""
    log = tmp_path / "long.log"
    _failing_log(log, before=20)
    verdict = check_log(log)
    assert verdict.verdict == "fail"
    timeline.write(timeline.from_log(verdict, str(log)), tmp_path, "long")
    history = tmp_path / "long.history.json"
    assert json.loads(history.read_text())["before"] > 0
    code, out, _ = _replay(capsys, str(history))
    assert code == 1 and out.startswith("unknown: ")
    assert f"runbound check-log {log}" in out and "never a pass" in out


@pytest.mark.parametrize("damage", ["not json", "no op", "old format", "factory given"])
def test_a_malformed_history_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], damage: str) -> None:
    _, history = _i19_failure(tmp_path, monkeypatch)
    data = json.loads(history.read_text())
    argv = [str(history)]
    if damage == "not json":
        history.write_text(history.read_text()[:-40])
    elif damage == "no op":
        del data["calls"][0]["op"]
        history.write_text(json.dumps(data))
    elif damage == "old format":
        del data["runbound_history"]
        history.write_text(json.dumps(data))
    else:
        argv.append("runbound.reference.memory:MemoryRunStore")
    code, out, err = _replay(capsys, *argv)
    assert code == 2 and not out
    assert err.startswith("runbound replay: ") and err.count("\n") == 1
