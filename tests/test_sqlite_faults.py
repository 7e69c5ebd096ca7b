"""The SQLite store under faults (issue 11): work per call, clocks that misbehave, bad
input, unusable paths, and a worker that must give way to stop and close. Each test
reproduces one item of the issue; none measures time (a guard timeout only ends a test
that would otherwise hang)."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runbound.model.clock import VirtualClock
from runbound.model.errors import (
    ClockError,
    InvalidArgument,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.records import Run
from runbound.reference import sqlite as sqlite_module
from runbound.reference.sqlite import SqliteRunStore

#: real seconds a test waits for something that happens at once in a correct store;
#: well below the store's busy timeout (30 s), which the old code waited out
GUARD = 10.0


def _store(tmp_path: Path, policy: Policy, clock: VirtualClock,
           name: str = "store.sqlite3") -> SqliteRunStore:
    return SqliteRunStore(policy, clock, str(tmp_path / name), synchronous="OFF")


def _mark(path: str) -> float:
    """The clock's mark as the file holds it, read past the store."""
    db = sqlite3.connect(path)
    try:
        return float(db.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()[0])
    finally:
        db.close()


def _finished(store: SqliteRunStore, run_id: str) -> None:
    store.start(run_id)
    store.transition(run_id, Status.RUNNING)
    store.transition(run_id, Status.COMPLETED)


# --- item 3: a call reads only the rows it changes ------------------------------------------

def _fill(path: str, terminal: int, active: int, at: float) -> None:
    """Add `terminal` completed and `active` running runs, all stamped `at`, straight into
    the store's file (the triggers keep the counts): building 10,000 runs call by call
    would take the test longer than it needs."""
    db = sqlite3.connect(path, isolation_level=None)
    (seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    seq = int(seq)
    rows: list[tuple[object, ...]] = [(f"t{i}", seq + i, "completed", at, at, at, "[]", 0)
                                      for i in range(terminal)]
    rows += [(f"a{i}", seq + terminal + i, "running", at, at, None, "[]", 0)
             for i in range(active)]
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO runs ({sqlite_module.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, "
                   "?, ?)", rows)
    db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + len(rows),))
    db.execute("COMMIT")
    db.close()


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> list[Run]:
    """Every row the store turns into a Run, in order."""
    seen: list[Run] = []
    convert = sqlite_module._run

    def counting(row: tuple[object, ...]) -> Run:
        run = convert(row)
        seen.append(run)
        return run

    monkeypatch.setattr(sqlite_module, "_run", counting)
    return seen


def _work(store: SqliteRunStore, rows_read: list[Run], call: Callable[[], object]
          ) -> tuple[int, int]:
    """(SQLite VM steps, rows turned into runs) that `call` costs."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0  # 0: go on

    rows_read.clear()
    store._db.set_progress_handler(step, 1)
    try:
        call()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps, len(rows_read)


#: TTL, lease and cap all set, nothing due: a sweep has work to look for and none to do
RETAINING = Policy(ttl=3600.0, stale_after=3600.0, max_terminal=1_000_000)


@pytest.mark.parametrize("expiring", [0, 1], ids=["nothing-due", "one-expires"])
def test_SqliteRunStore_lazy_sweep_reads_only_the_rows_it_removes(
        tmp_path: Path, rows_read: list[Run], expiring: int) -> None:
    """A mutation's lazy sweep costs the same at 10,000 retained runs as at 10, in
    SQLite's own steps and in rows read: it walks its indexes only over what it removes
    (the old sweep read every terminal row, and every active one with a lease)."""
    cost: dict[int, tuple[int, int]] = {}
    for size in (10, 10_000):
        clock = VirtualClock(1000.0)
        store = _store(tmp_path, RETAINING, clock, f"{size}.sqlite3")
        if expiring:
            _finished(store, "old")  # terminated at 1000: due at 4600
        clock.advance(1.0)
        _fill(store.path, terminal=size // 2, active=size // 2, at=clock.time)
        store.start("probe")
        clock.advance(3599.0)  # 4600: the filled runs are due a second later
        cost[size] = _work(store, rows_read, lambda: store.heartbeat("probe"))  # noqa: B023
        assert len(store) == size + 1  # the probe and the filled runs; "old" is gone
        store.close()
    (small_steps, small_rows), (large_steps, large_rows) = cost[10], cost[10_000]
    assert large_steps <= small_steps, f"(VM steps, rows) by runs retained: {cost}"
    assert large_rows == small_rows == 1 + expiring, cost  # the probe, what expired


def test_SqliteRunStore_sweep_without_ttl_or_lease_reads_no_runs(
        tmp_path: Path, clock: VirtualClock, rows_read: list[Run]) -> None:
    """With no TTL and no lease there is nothing time can remove: a mutation's sweep reads
    no run at all (the old one read every terminal row anyway)."""
    store = _store(tmp_path, Policy(), clock)
    _fill(store.path, terminal=1000, active=0, at=clock.time)
    store.start("probe")
    _, rows = _work(store, rows_read, lambda: store.heartbeat("probe"))
    assert rows == 1  # the probe itself
    store.close()


def test_SqliteRunStore_sweep_ranges_agree_with_the_model_at_the_boundary(
        tmp_path: Path) -> None:
    """The range queries are widened for floating point, and each row is judged by the
    model's own tests: with a run ended and one updated at 3.6, a TTL and a lease of 3.0,
    both are due exactly at 6.6 (= 3.6 + 3.0), although 6.6 - 3.0 < 3.6, so a query on
    `terminated_at <= now - ttl` alone would miss them; one ulp earlier neither is."""
    assert 3.6 + 3.0 == 6.6 and 6.6 - 3.0 < 3.6  # the trap, in this machine's floats
    clock = VirtualClock(3.6)
    store = _store(tmp_path, Policy(ttl=3.0, stale_after=3.0), clock)
    _finished(store, "ended")
    store.start("stuck")
    clock.fault(math.nextafter(6.6, 0.0))
    swept = store.prune()
    assert not (swept.reaped or swept.expired)
    clock.fault(6.6)
    swept = store.prune()
    assert (swept.reaped, swept.expired) == (("stuck",), ("ended",))
    store.close()


# --- items 4 and 11: close and stop, against a start and against a blocked sweep (W3) ---

class _PausingClock(VirtualClock):
    """A virtual clock that reports on the worker: `woken` when time woke a sleeper,
    `stopped` when a stop did (a stopped sleeper then waits for `go` before it returns:
    the window between a stop and the end of the worker thread), `retrying` once a
    worker thread has read it twice since it woke (it tried to sweep and is trying
    again)."""

    def __init__(self) -> None:
        super().__init__(1000.0)
        self.woken = threading.Event()
        self.stopped = threading.Event()
        self.go = threading.Event()
        self.retrying = threading.Event()
        self._worker_readings = 0

    def __call__(self) -> float:
        if threading.current_thread().name.startswith("runbound-cleanup"):
            self._worker_readings += 1  # one worker thread: no lost updates
            if self._worker_readings >= 2:
                self.retrying.set()
        return super().__call__()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        was_stopped = super().sleep(seconds, stop)
        if was_stopped:
            self.stopped.set()
            self.go.wait(GUARD)
        else:
            self.woken.set()
        return was_stopped


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("runbound-cleanup")]


def test_SqliteRunStore_close_racing_start_cleanup_worker_leaves_no_worker(
        tmp_path: Path) -> None:
    """close() while start_cleanup_worker() comes in between its stopping the worker and
    the worker thread's end: the start finds the store closed, and no worker outlives the
    close (the old close stopped the worker first and marked the store closed after, so
    this start began a worker that swept a closed store forever)."""
    clock = _PausingClock()
    store = _store(tmp_path, Policy(ttl=1.0), clock)
    assert store.start_cleanup_worker(60.0)
    assert clock.settle(_workers(), GUARD)
    closer = threading.Thread(target=store.close)
    closer.start()
    started: list[object] = []
    try:
        assert clock.stopped.wait(GUARD), "close() never stopped the worker"
        try:  # the worker is told to stop; its thread has not ended yet
            started.append(store.start_cleanup_worker(60.0))
        except StoreClosed as error:
            started.append(error)
    finally:
        clock.go.set()
        closer.join(GUARD)
    alive = _workers()
    store.stop_cleanup_worker(GUARD)  # no leak whatever happened
    assert not closer.is_alive()
    assert isinstance(started[0], StoreClosed), started
    assert not alive and store.cleanup_workers_alive() == 0


@pytest.mark.parametrize("how", ["stop_cleanup_worker", "close"])
def test_SqliteRunStore_stop_does_not_wait_for_a_sweep_blocked_by_another_connection(
        tmp_path: Path, how: str) -> None:
    """Another connection holds the write lock (BEGIN IMMEDIATE) when the worker's sweep
    is due: stop_cleanup_worker() and close() return before that lock is released, and
    the worker starts no sweep after they return (W3). The old store waited for the busy
    timeout, then swept."""
    clock = _PausingClock()
    store = _store(tmp_path, Policy(ttl=1.0), clock)
    _finished(store, "a")
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    order: list[str] = []
    try:
        assert store.start_cleanup_worker(5.0)
        assert clock.settle(_workers(), GUARD)
        clock.advance(5.0)  # the sweep is due, "a" past its TTL
        assert clock.woken.wait(GUARD), "the worker did not wake"
        # a store that reads the clock only once it has the write lock never retries: the
        # order below then shows whether stop waited for it
        clock.retrying.wait(GUARD)
        clock.go.set()  # a stopped sleep returns at once

        def stop() -> None:
            getattr(store, how)()
            order.append(how)

        stopper = threading.Thread(target=stop)
        stopper.start()
        stopper.join(GUARD)
    finally:
        order.append("released")
        holder.execute("ROLLBACK")
        holder.close()
    stopper.join(GUARD)
    store.stop_cleanup_worker(GUARD)  # no leak whatever happened
    assert order == [how, "released"]
    assert clock.retrying.is_set()  # the stop came while the sweep was blocked
    assert not _workers()
    with SqliteRunStore(Policy(ttl=1.0), clock, store.path) as again:
        assert [r.run_id for r in again.snapshot()] == ["a"]  # no sweep ran after
    store.close()


# --- items 6 and 7: a clock that reads NaN, or steps back -----------------------------------

CLOCKED: list[tuple[str, Callable[[SqliteRunStore], object]]] = [
    ("start", lambda s: s.start("new")),
    ("transition", lambda s: s.transition("live", Status.COMPLETED)),
    ("heartbeat", lambda s: s.heartbeat("live")),
    ("append_event", lambda s: s.append_event("live", "e")),
    ("get", lambda s: s.get("live")),
    ("list_runs", lambda s: s.list_runs(5)),
    ("prune", lambda s: s.prune()),
]


@pytest.mark.parametrize("reading", [math.nan, math.inf, -math.inf])
def test_SqliteRunStore_nonfinite_clock_reading_is_refused_and_changes_nothing(
        tmp_path: Path, clock: VirtualClock, reading: float) -> None:
    """C1: every call that reads the clock refuses a NaN or infinite reading with
    ClockError naming the rule, and leaves every run and the file's mark as they were
    (the old store failed with `NOT NULL constraint failed: meta.value`). Arguments are
    checked before the clock, and the store works again once the clock does."""
    store = _store(tmp_path, Policy(ttl=10.0, stale_after=5.0), clock)
    store.start("live")
    before, mark = store.snapshot(), _mark(store.path)
    clock.advance(100.0)  # "live" would be reaped by any sweep at this time
    clock.fault(reading)
    for name, call in CLOCKED:
        with pytest.raises(ClockError, match="C1") as raised:
            call(store)
        assert "state:" in str(raised.value), name
        assert store.snapshot() == before and _mark(store.path) == mark, name
    with pytest.raises(InvalidArgument, match="R1"):
        store.start("")  # arguments come before the clock
    clock.fault(None)
    assert store.prune().reaped == ("live",)
    assert _mark(store.path) == clock.time
    store.close()


#: calls made when the clock first reaches the expiry, and whether each is refused: each
#: must raise the mark, read or write, refused or not
RAISERS: list[tuple[str, Callable[[SqliteRunStore], object], bool]] = [
    ("get-refused", lambda s: s.get("a"), True),
    ("get", lambda s: s.get("other"), False),
    ("list_runs", lambda s: s.list_runs(5), False),
    ("heartbeat-refused", lambda s: s.heartbeat("nope"), True),
    ("start-refused", lambda s: s.start("other"), True),
]


@pytest.mark.parametrize("reopen", [False, True], ids=["same-store", "after-reopen"])
@pytest.mark.parametrize(("raiser", "refused"), [r[1:] for r in RAISERS],
                         ids=[r[0] for r in RAISERS])
def test_SqliteRunStore_clock_stepping_back_brings_no_expired_run_back(
        tmp_path: Path, clock: VirtualClock, raiser: Callable[[SqliteRunStore], object],
        refused: bool, reopen: bool) -> None:
    """C1: once any call has seen the clock at a run's expiry -- a read, a refused call --
    the run stays gone when the clock steps back, and a restart keeps that mark (it is in
    the file). The old store raised the mark only in committed writes."""
    store = _store(tmp_path, Policy(ttl=10.0), clock)
    _finished(store, "a")
    store.start("other")
    clock.advance(10.0)
    try:
        raiser(store)
        assert not refused
    except RunboundError as error:
        assert refused and not isinstance(error, InvalidArgument), error
    assert _mark(store.path) == clock.time
    if reopen:
        store = store.reopen()
    clock.step(-5.0)
    with pytest.raises(UnknownRun, match="V2"):
        store.get("a")
    assert [r.run_id for r in store.list_runs(5).runs] == ["other"]
    assert store.heartbeat("other").updated_at == clock.time + 5.0  # never goes back (I8)
    store.close()


# --- item 8: bad input ---------------------------------------------------------------------

BAD: list[tuple[str, Callable[[Any], object], str]] = [
    ("cursor-superscript", lambda s: s.list_runs(1, None, "²"), "L3"),
    ("cursor-fullwidth", lambda s: s.list_runs(1, None, "１"), "L3"),
    ("cursor-5000-digits", lambda s: s.list_runs(1, None, "9" * 5000), "L3"),
    ("cursor-2**63", lambda s: s.list_runs(1, None, str(2**63)), "L3"),
    ("limit-2**63", lambda s: s.list_runs(2**63), "L2"),
    ("limit-bool", lambda s: s.list_runs(True), "L2"),
    ("id-surrogate", lambda s: s.start("a\ud800"), "R1"),
    ("id-surrogate-get", lambda s: s.get("live\udfff"), "R1"),
    ("id-129", lambda s: s.start("y" * 129), "R1"),
    ("status", lambda s: s.transition("live", "paused"), "R2"),
    ("id-before-status", lambda s: s.transition(7, "paused"), "R1"),
    ("payload-surrogate", lambda s: s.append_event("live", "x\udfff"), "R3"),
    ("interval-10**400", lambda s: s.start_cleanup_worker(10**400), "W1"),
    ("interval-nan", lambda s: s.start_cleanup_worker(math.nan), "W1"),
]


@pytest.mark.parametrize(("call", "rule"), [(b[1], b[2]) for b in BAD],
                         ids=[b[0] for b in BAD])
def test_SqliteRunStore_bad_input_is_a_typed_error_that_changes_nothing(
        tmp_path: Path, clock: VirtualClock, call: Callable[[SqliteRunStore], object],
        rule: str) -> None:
    """Bad input is InvalidArgument naming its rule, checked before the clock is read: no
    run, no worker and not the file's mark changes, though the clock has moved on."""
    store = _store(tmp_path, Policy(ttl=10.0), clock)
    store.start("live")
    _finished(store, "done")
    before, mark = store.snapshot(), _mark(store.path)
    clock.advance(10.0)  # "done" would expire, and the mark rise, if anything ran
    with pytest.raises(InvalidArgument, match=rule) as raised:
        call(store)
    assert "state:" in str(raised.value)
    assert store.snapshot() == before and _mark(store.path) == mark
    assert store.cleanup_workers_alive() == 0
    store.close()


ODD_IDS = ["'; DROP TABLE runs; --", 'say "hi"', "a\x00b", "line\nbreak", "{braces}*?",
           "\U0001f600 non-BMP", "x" * 128, "ERR", "nil", "%s", "\\"]


def test_SqliteRunStore_keeps_any_valid_id_and_payload_exactly(
        tmp_path: Path, clock: VirtualClock) -> None:
    """R1, R3: every id and payload the rules accept works and comes back as given, and a
    cursor at the bound (2**63-1) is accepted."""
    store = _store(tmp_path, Policy(), clock)
    for rid in ODD_IDS:
        store.start(rid)
        assert store.append_event(rid, rid) == 1
        assert store.get(rid).run_id == rid and store.get(rid).events == (rid,)
    assert [r.run_id for r in store.list_runs(len(ODD_IDS), None, str(2**63 - 1)).runs] \
        == ODD_IDS[::-1]
    store.close()


# --- item 10: the default clock -------------------------------------------------------------

def test_SqliteRunStore_default_clock_is_wall_time(tmp_path: Path) -> None:
    """C2: with no clock given, a run's timestamps are wall time (time.time), which
    survives a reboot, not time.monotonic (seconds since boot)."""
    with SqliteRunStore(Policy(), path=str(tmp_path / "wall.sqlite3")) as store:
        before = time.time()
        run = store.start("a")
        after = time.time()
    assert before <= run.created_at <= after


# --- item 12: paths that cannot hold a store; import makes nothing --------------------------

def _unusable(tmp_path: Path, kind: str) -> str:
    if kind == "directory":
        return str(tmp_path)
    if kind == "missing-parent":
        return str(tmp_path / "no" / "such" / "store.sqlite3")
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"not a database, " * 512)
    return str(path)


@pytest.mark.parametrize("kind", ["directory", "missing-parent", "not-a-database"])
def test_SqliteRunStore_unusable_path_is_a_typed_error(tmp_path: Path, kind: str) -> None:
    """A path that cannot hold a store is InvalidArgument (D1) naming the path, not a raw
    sqlite3 error."""
    path = _unusable(tmp_path, kind)
    with pytest.raises(InvalidArgument, match="D1") as raised:
        SqliteRunStore(Policy(), path=path)
    assert repr(path) in str(raised.value) and "state:" in str(raised.value)


def test_SqliteRunStore_unknown_synchronous_is_a_typed_error(tmp_path: Path) -> None:
    """A `synchronous` SQLite does not know is InvalidArgument (D2), before any file is
    made."""
    with pytest.raises(InvalidArgument, match="D2"):
        SqliteRunStore(Policy(), path=str(tmp_path / "x.sqlite3"), synchronous="SOMETIMES")
    assert list(tmp_path.iterdir()) == []


OPEN_READ_ONLY = textwrap.dedent("""
    import sys
    from runbound.model.policy import Policy
    from runbound.model.errors import RunboundError
    from runbound.reference.sqlite import SqliteRunStore
    try:
        SqliteRunStore(Policy(), path=sys.argv[1]).close()
        print("opened")
    except RunboundError as error:
        print(type(error).__name__, error)
""")


@pytest.fixture
def read_only_store() -> Iterator[str]:
    """A store file, and its directory, that the test's user cannot write. (Not under
    pytest's tmp_path: a child without privileges must be able to reach it.)"""
    folder = Path(tempfile.mkdtemp(prefix="runbound-ro-"))
    path = folder / "store.sqlite3"
    SqliteRunStore(Policy(), path=str(path), synchronous="OFF").close()
    for extra in folder.glob("store.sqlite3-*"):
        extra.unlink()
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(0o555)
    yield str(path)
    folder.chmod(0o755)
    shutil.rmtree(folder)


def test_SqliteRunStore_read_only_path_is_a_typed_error(read_only_store: str) -> None:
    """A store file (and folder) the process may not write is InvalidArgument (D1) naming
    the path. File modes do not bind root, so as root the child opening it runs without
    capabilities (setpriv), where they do."""
    command = [sys.executable, "-c", OPEN_READ_ONLY, read_only_store]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "as root, the read-only case needs setpriv (util-linux)"
        command = [setpriv, "--bounding-set=-all", *command]
    child = subprocess.run(command, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert child.stdout.startswith("InvalidArgument"), child.stdout + child.stderr
    assert "D1" in child.stdout and repr(read_only_store) in child.stdout


IMPORT_AND_USE = textwrap.dedent("""
    import os, sys
    from runbound.model.clock import VirtualClock
    from runbound.model.policy import Policy
    from runbound.reference.sqlite import on_disk
    assert os.listdir(sys.argv[1]) == [], "importing made " + repr(os.listdir(sys.argv[1]))
    store = on_disk(Policy(), VirtualClock())
    store.start("a")
    store.close()
    assert len(os.listdir(sys.argv[1])) == 1
""")


def test_sqlite_module_makes_its_directory_on_first_use_and_removes_it(
        tmp_path: Path) -> None:
    """Importing runbound.reference.sqlite creates nothing; `on_disk` makes its directory on first
    use, and it is gone after the process exits."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    subprocess.run([sys.executable, "-c", IMPORT_AND_USE, str(temp)], check=True,
                   env={**os.environ, "PYTHONPATH": str(Path.cwd()), "TMPDIR": str(temp)})
    assert list(temp.iterdir()) == []


# --- calls after close: L1 comes first ------------------------------------------------------

AFTER_CLOSE: list[tuple[str, Callable[[Any], object]]] = [
    ("start", lambda s: s.start(17)),
    ("transition", lambda s: s.transition("", "paused")),
    ("heartbeat", lambda s: s.heartbeat("a\ud800")),
    ("append_event", lambda s: s.append_event("live", 42)),
    ("get", lambda s: s.get("")),
    ("list_runs", lambda s: s.list_runs(0, "paused", "²")),
    ("prune", lambda s: s.prune()),
    ("len", len),
    ("snapshot", lambda s: s.snapshot()),
    ("start_cleanup_worker", lambda s: s.start_cleanup_worker(-1)),
]


def test_SqliteRunStore_closed_store_refuses_every_call_before_its_arguments(
        tmp_path: Path, clock: VirtualClock) -> None:
    """L1 wins: after close() every call but close, stop_cleanup_worker and
    cleanup_workers_alive raises StoreClosed, whatever its arguments (the old store
    checked the arguments first), and the clock is not even read."""
    store = _store(tmp_path, Policy(), clock)
    store.start("live")
    store.close()
    clock.fault(math.nan)
    for _, call in AFTER_CLOSE:
        with pytest.raises(StoreClosed, match="L1"):
            call(store)
    store.close()  # twice is a no-op
    assert store.stop_cleanup_worker() is False and store.cleanup_workers_alive() == 0
