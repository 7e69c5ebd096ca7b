"""The timeline of a failing history (model/check/timeline.py), opened in headless Chromium:
one lane per thread, the call no order can place and the calls running with it marked,
labels a person reads. The log is written by hand, as a store in another language would."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from runbound.model.check import counterexample as cx
from runbound.model.check import timeline, verify
from runbound.model.check.linearizability import Call
from runbound.model.check.log import check_log
from runbound.model.check.profiles import machine_settings
from runbound.model.lifecycle import Status
from runbound.model.records import Run
from runbound.reference.broken import RacyStore


def _line(t: int, op: str, args: list[object], inv: int, ret: int, now: float,
          ok: object) -> str:
    return json.dumps({"t": t, "op": op, "args": args, "inv": inv, "ret": ret,
                       "wall_inv": 0.0, "wall_ret": 0.0, "now": now, "ok": ok})


def _run(rid: str, status: str, at: float) -> dict[str, object]:
    return {"run": {"run_id": rid, "status": status, "created_at": at, "updated_at": at,
                    "terminated_at": None, "events": [], "dropped_events": 0}}


def _racing_log(path: Path) -> None:
    """Thread 1's get sees a run 'running' that nothing made running; thread 2's
    heartbeat runs at once with it."""
    header = {"runbound_log": 1, "store": "hand-written", "clock_readings": True,
              "policy": {"ttl": None, "max_terminal": None, "max_active": None,
                         "max_events_per_run": None, "stale_after": None,
                         "sweep": "lazy"}}
    lines = [json.dumps(header)] + [json.dumps({"thread": t, "at": 0}) for t in range(3)]
    lines += [
        _line(0, "start", ["job-1"], 1_000, 40_000, 10.0, _run("job-1", "pending", 10.0)),
        _line(1, "get", ["job-1"], 52_000, 2_150_000, 10.5,
              _run("job-1", "running", 10.0)),
        _line(2, "heartbeat", ["job-1"], 1_900_000, 2_600_000, 11.0,
              _run("job-1", "pending", 10.0)),
        _line(0, "get", ["job-1"], 3_000_000, 3_100_000, 12.0,
              _run("job-1", "pending", 10.0)),
    ]
    path.write_text("\n".join(lines) + "\n")


def _chromium(page: Path, tmp_path: Path) -> tuple[str, Path]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("no chromium on PATH: scripts/bootstrap installs it (Debian: chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,800"]
    url = page.resolve().as_uri()
    dom = subprocess.run([binary, *flags, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    shot = tmp_path / "timeline.png"
    subprocess.run([binary, *flags, f"--screenshot={shot}", url], capture_output=True,
                   timeout=120, check=True)
    return dom, shot


def test_failing_log_timeline_renders_lanes_and_marks_in_chromium(tmp_path: Path) -> None:
    log = tmp_path / "race.log"
    _racing_log(log)
    verdict = check_log(log)
    assert verdict.verdict == "fail" and verdict.culprit is not None
    assert verdict.culprit.op == "get" and verdict.culprit.thread == 1
    assert verdict.overlapping == [6, 7]  # the get itself, and the heartbeat beside it
    page, data, _ = timeline.write(timeline.from_log(verdict, "race.log"), tmp_path, "race")
    dom, shot = _chromium(page, tmp_path)
    for lane in ("lane-0", "lane-1", "lane-2"):
        assert f'id="{lane}"' in dom
    assert dom.count('class="bar culprit"') == 1
    assert dom.count('class="bar conflict"') == 1
    assert "get('job-1')" in dom and "Run('job-1', 'running')" in dom
    assert "+2.149 ms" in dom  # times relative to the first call, not raw nanoseconds
    assert "2150000" not in dom.replace(data.name, "")
    assert shot.stat().st_size > 5_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_porcupine_data_has_its_visualisers_shape(tmp_path: Path) -> None:
    log = tmp_path / "race.log"
    _racing_log(log)
    data = timeline.porcupine(timeline.from_log(check_log(log), "race.log"))
    (part,) = data["Partitions"]
    assert set(part) == {"History", "PartialLinearizations", "Largest"}
    history = part["History"]
    assert {h["ClientId"] for h in history} == {0, 1, 2}
    for h in history:
        assert set(h) == {"ClientId", "Start", "OriginalStart", "End", "OriginalEnd",
                          "Description", "Metadata"}
        assert h["Start"] < h["End"] and h["Start"] % 100 == 0
    starts = {h["Description"]: h["Start"] for h in history}
    assert starts["heartbeat('job-1') -> Run('job-1', 'pending')"] < \
        starts["get('job-1') -> Run('job-1', 'running')"] + 400  # overlap kept in order
    (note,) = data["Annotations"]
    assert note["ClientId"] == 1 and note["Annotation"] is True


def test_i19_history_becomes_a_timeline(tmp_path: Path) -> None:
    """The calls of an I19 failure (model.check.linearizability.Call) render the same way."""
    run = Run("a", Status.PENDING, 1000.0, 1000.0)
    calls = [Call(0, "start", ("a",), 0, 50, run), Call(1, "start", ("a",), 10, 60, run)]
    history = timeline.from_calls(calls, calls[1], "I19: racy", "both starts succeeded")
    page = timeline.render_html(history)
    assert page.count("bar culprit") == 1 and page.count("bar conflict") == 1
    assert "start(&#x27;a&#x27;)" in page and "thread 1" in page


def test_i19_failure_in_verify_writes_its_timeline(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Where I19 reports a race, the shrunk history is written as a timeline too."""

    monkeypatch.setattr(verify, "TIMELINES", tmp_path)
    check = verify.check_invariant(RacyStore, "I19", machine_settings())
    assert check.verdict == "fail" and check.counterexample is not None
    page = tmp_path / "I19-RacyStore.html"
    assert page.exists() and f"# as a timeline: {page}" in cx.lines(check.counterexample)
    assert check.counterexample.kind == "history" and any(
        c.culprit for c in check.counterexample.history)
    text = page.read_text()
    assert text.count("bar culprit") == 1 and "start(&#x27;" in text
