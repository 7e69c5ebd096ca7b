"""The SQLite store: durable through SIGKILL, and shared by processes on one file."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from two_processes import admitted_by_two_processes

from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.reference.sqlite import SqliteRunStore

CHILD = textwrap.dedent("""
    import sys
    from runbound.model.lifecycle import Status
    from runbound.model.policy import Policy
    from runbound.reference.sqlite import SqliteRunStore
    path, first = sys.argv[1], int(sys.argv[2])
    store = SqliteRunStore(Policy(), path=path)
    for i in range(first, first + 100000):
        rid = f"run-{i}"
        for step in ("start", Status.RUNNING, Status.COMPLETED):
            if step == "start":
                store.start(rid)
            else:
                store.transition(rid, step)
            print(rid, getattr(step, "value", "pending"), flush=True)  # acknowledged
""")
ORDER = ["pending", "running", "completed"]


def test_SqliteRunStore_keeps_every_acknowledged_call_through_SIGKILL(tmp_path: Path) -> None:
    """A child doing calls is killed with SIGKILL 15 times; after each, reopening the file
    finds every call it acknowledged (or a later step of that run), and the file is sound."""
    path = str(tmp_path / "crash.sqlite3")
    rng = random.Random(7)
    acked: dict[str, str] = {}
    first = 0
    for _ in range(15):
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(first)],
                                 stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        assert child.stdout is not None
        first_ack = child.stdout.readline()  # the kill window opens once calls flow
        rid, status = first_ack.split()
        acked[rid] = status
        deadline = time.monotonic() + rng.uniform(0.05, 0.5)
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            rid, status = line.split()
            acked[rid] = status
        child.send_signal(signal.SIGKILL)
        child.wait()
        for line in child.stdout:  # acknowledged before the kill, read after it
            rid, status = line.split()
            acked[rid] = status
        first += 100000
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        with SqliteRunStore(Policy(), path=path) as store:
            for rid, status in acked.items():
                run = store.get(rid)
                assert ORDER.index(run.status.value) >= ORDER.index(status), (rid, run, status)
    assert len(acked) >= 15  # at least one acknowledged run per kill


def test_SqliteRunStore_processes_share_one_bounded_store(tmp_path: Path) -> None:
    """Two processes starting runs on one file see one store: together they are admitted
    exactly max_active runs."""
    path = str(tmp_path / "shared.sqlite3")
    SqliteRunStore(Policy(), path=path).close()
    admitted = admitted_by_two_processes(
        f"SqliteRunStore(Policy(max_active=50), path={path!r})")
    assert sum(admitted) == 50
    with SqliteRunStore(Policy(max_active=50), path=path) as store:
        assert len(store) == 50
        assert all(r.status is Status.PENDING for r in store.snapshot())
