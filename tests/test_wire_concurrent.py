"""Concurrency over the wire protocol (specs/wire.md, "Concurrency: I19"): a store that
declares `thread_safe` in `hello` gets requests from several threads at once, replies
are matched by id, and I19 is checked through the boundary: the reference passes it, and
the racy store fails it as it does in-process. A store that does not declare it still
gets one request at a time, and I19 is skipped, with the reason."""

from __future__ import annotations

import shlex
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from runbound.model.check import verify
from runbound.model.check.linearizability import stress
from runbound.model.check.process import ExecFactory, ProcessRunStore, exec_factory
from runbound.model.check.profiles import machine_settings
from runbound.model.check.verify import check_invariant
from runbound.model.clock import VirtualClock
from runbound.model.errors import StoreProcessError
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities, dispose
from runbound.model.records import Run
from runbound.reference.broken import RacyStore


class SerialRacyStore(RacyStore):
    """The racy store declaring itself not thread-safe: served one request at a time,
    its race can never happen (`python -m runbound.serve` imports it from here)."""

    capabilities: ClassVar[Capabilities] = Capabilities()


def served(spec: str) -> ExecFactory:
    """A factory of `spec`'s stores, each served over the wire by `runbound.serve`."""
    return exec_factory(shlex.join([sys.executable, "-m", "runbound.serve", spec]))


def _i19(factory: Any) -> Any:
    settings = machine_settings(database=None, derandomize=True, max_examples=5)
    return check_invariant(factory, "I19", settings)


@pytest.fixture(autouse=True)
def _timelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I19 failure writes its timeline: into the test's folder, not out/."""
    monkeypatch.setattr(verify, "TIMELINES", tmp_path / "timelines")


# --- I19 through the boundary ---------------------------------------------------------------

def test_the_reference_passes_I19_over_the_wire_with_overlapping_calls() -> None:
    wire = served("runbound.reference.memory:MemoryRunStore")
    assert wire.capabilities.thread_safe and "I19" not in wire.capabilities.skipped()
    verdict, history = stress(wire)
    assert verdict.verdict == "pass", (verdict, history[:5])
    assert verdict.histories == 100 and verdict.overlapped > 0
    check = _i19(wire)
    assert check.verdict == "pass" and "overlapping calls" in check.note, check


def test_the_racy_store_fails_I19_over_the_wire_as_in_process() -> None:
    """The proof the concurrency is real: the race is only there when two starts reach
    the store at once. Served one at a time (the same store, not declaring itself
    thread-safe), the same stress check passes: the failure is the concurrency's."""
    assert _i19(RacyStore).verdict == "fail"
    check = _i19(served("runbound.reference.broken:RacyStore"))
    assert check.verdict == "fail", check
    assert "race:" in check.note, check.note  # not a defect seen one call at a time
    verdict, _ = stress(served("tests.test_wire_concurrent:SerialRacyStore"), histories=30)
    assert verdict.verdict == "pass", verdict


def test_a_store_not_declaring_thread_safe_still_has_I19_skipped_with_its_reason() -> None:
    wire = served("tests.test_wire_concurrent:SerialRacyStore")
    assert not wire.capabilities.thread_safe
    store = wire(Policy(), VirtualClock())
    assert isinstance(store, ProcessRunStore) and not store.thread_safe
    dispose(store)
    check = _i19(wire)
    assert check.verdict == "skipped", check
    assert "does not declare thread_safe" in check.note and "serialises" in check.note


# --- the kit's side: replies by id, failures for every caller, no thread of its own ---------

#: a thread-safe store program that holds the `get`s it reads until two are in flight and
#: the file GO exists, then answers them last first (MODE "reverse"), with an id no
#: request has ("unknown-id"), not at all ("hang"), or by exiting ("exit")
FAKE = textwrap.dedent("""
    import json, os, sys, time
    mode, go = sys.argv[1], sys.argv[2]
    held = []

    def run(rid):
        return {"run_id": rid, "status": "pending", "created_at": 1.0, "updated_at": 1.0,
                "terminated_at": None, "events": [], "dropped_events": 0, "seq": 1}

    def send(reply):
        sys.stdout.write(json.dumps(reply) + "\\n")
        sys.stdout.flush()

    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "hello":
            send({"id": msg["id"], "result": {"protocol": 1,
                                               "capabilities": {"thread_safe": True}}})
        elif msg["op"] != "get":
            send({"id": msg["id"], "result": 0 if msg["op"] == "cleanup_workers_alive"
                  else None})
        else:
            held.append(msg)
            if len(held) < 2:
                continue
            while not os.path.exists(go):
                time.sleep(0.002)
            if mode == "hang":
                time.sleep(3600)
            if mode == "exit":
                sys.exit(4)
            for m in reversed(held):
                send({"id": 999 if mode == "unknown-id" else m["id"],
                      "result": run(m["args"][0])})
            held.clear()
""")


def _two_gets(tmp_path: Path, mode: str, timeout: float = 5.0
              ) -> tuple[ProcessRunStore, dict[str, object], set[threading.Thread]]:
    """Two threads each `get` a run at once from the fake store. Returns the store, what
    each call gave (by run id), and the threads other than the two callers that were
    started while both calls were in flight."""
    script, go = tmp_path / "fake.py", tmp_path / "GO"
    script.write_text(FAKE)
    factory = exec_factory([sys.executable, str(script), mode, str(go)], timeout=timeout)
    store = factory(Policy(), VirtualClock())
    assert isinstance(store, ProcessRunStore) and store.thread_safe
    got: dict[str, object] = {}

    def get(rid: str) -> None:
        try:
            got[rid] = store.get(rid)
        except StoreProcessError as error:
            got[rid] = error

    before = set(threading.enumerate())
    callers = [threading.Thread(target=get, args=(rid,)) for rid in ("a", "b")]
    for t in callers:
        t.start()
    end = time.monotonic() + 10.0
    while len(store._process._waiting) < 2:  # both requests in flight
        assert time.monotonic() < end, "the two requests never were in flight at once"
        time.sleep(0.001)
    others = set(threading.enumerate()) - before - set(callers)
    go.touch()
    for t in callers:
        t.join(30.0)
    return store, got, others


def test_replies_in_any_order_go_to_their_requests_by_id(tmp_path: Path) -> None:
    """The store answers b's request before a's: each caller still gets its own run
    (matched by order, a would get b's). Meanwhile the proxy started no thread of its
    own (the checkers count a store's threads): the callers did the reading."""
    store, got, others = _two_gets(tmp_path, "reverse")
    assert isinstance(got["a"], Run) and got["a"].run_id == "a", got
    assert isinstance(got["b"], Run) and got["b"].run_id == "b", got
    assert not others, [t.name for t in others]
    dispose(store)


@pytest.mark.parametrize(("mode", "code"), [("unknown-id", "X4"), ("hang", "X2"),
                                            ("exit", "X1")])
def test_a_broken_program_fails_every_call_in_flight_each_naming_its_own(
        tmp_path: Path, mode: str, code: str) -> None:
    store, got, _ = _two_gets(tmp_path, mode, timeout=1.0)
    for rid in ("a", "b"):
        error = got[rid]
        assert isinstance(error, StoreProcessError), got
        message = str(error)
        assert f"{code}:" in message and f"get({rid!r})" in message, message
    if mode == "unknown-id":
        assert "a reply to request 999 where #" in str(got["a"])
    with pytest.raises(StoreProcessError, match=code):  # broken for good
        store.get("c")
    store.release()


#: a thread-safe store program answering each request as soon as it reads it
ECHO = textwrap.dedent("""
    import json, sys
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "hello":
            result = {"protocol": 1, "capabilities": {"thread_safe": True}}
        elif msg["op"] == "get":
            result = {"run_id": msg["args"][0], "status": "pending", "created_at": 1.0,
                      "updated_at": 1.0, "terminated_at": None, "events": [],
                      "dropped_events": 0, "seq": 1}
        else:
            result = 0 if msg["op"] == "cleanup_workers_alive" else None
        sys.stdout.write(json.dumps({"id": msg["id"], "result": result}) + "\\n")
        sys.stdout.flush()
""")


def test_every_caller_gets_its_reply_however_often_the_reader_role_passes(
        tmp_path: Path) -> None:
    """Bursts of eight threads making three calls each, switching every microsecond, as
    the stress check's histories do: each call returns its own run. The reader role
    passes at every reply; handed to a caller that had just taken its reply and was
    leaving for good (its last call), it woke nobody, and the callers still waiting sat
    out the timeout (X2: a hung store, though it had answered)."""
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    store = exec_factory([sys.executable, str(script)], timeout=5.0)(Policy(), VirtualClock())
    wrong: list[object] = []

    def calls(burst: int, k: int) -> None:
        for i in range(3):
            rid = f"{burst}-{k}-{i}"
            try:
                run = store.get(rid)
            except StoreProcessError as error:
                wrong.append(error)
                return
            if run.run_id != rid:
                wrong.append((rid, run))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for burst in range(150):
            threads = [threading.Thread(target=calls, args=(burst, k)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60.0)
            if wrong:
                break
    finally:
        sys.setswitchinterval(switch)
    assert not wrong, wrong[:3]
    dispose(store)
