"""The Redis store under faults (issue 11): a bad clock, ids a protocol might take for a
reply, retries after a stall, a stalled server while the worker sweeps, close racing the
worker, hostile arguments, prefixes that nest. Every test runs against a real
redis-server, stalled with SIGSTOP where it says so; none mocks Redis."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.backoff import ConstantBackoff, NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from runbound.model.clock import VirtualClock
from runbound.model.errors import (
    ClockError,
    InvalidArgument,
    RunboundError,
    StoreClosed,
    UnknownRun,
)
from runbound.model.lifecycle import Status
from runbound.model.policy import MAX_INT, Policy, SweepMode
from runbound.model.records import Run
from runbound.reference.redis import OutcomeUnknown, RedisRunStore, check_prefix, script_args
from runbound.reference.redis_server import RedisServer

#: the longest wait of any test here, in real seconds: a guard against a hang, never a
#: measure (nothing below asserts how long anything took)
GUARD = 10.0


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


@pytest.fixture
def stores(server: RedisServer, clock: VirtualClock) -> Iterator[Callable[..., RedisRunStore]]:
    """Stores on the test's server, each under a prefix of its own; all closed after."""
    made: list[RedisRunStore] = []

    def make(policy: Policy | None = None, prefix: str | None = None, **kwargs: Any
             ) -> RedisRunStore:
        store = RedisRunStore(policy or Policy(), clock, url=server.url,
                              prefix=prefix or f"t:{{s{len(made)}}}:", **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@contextmanager
def stalled(server: RedisServer) -> Iterator[None]:
    """The server process is stopped (SIGSTOP) inside the block: the kernel still accepts
    connections and buffers what clients send, but nothing is answered."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition()` holds (an event), failing after GUARD seconds."""
    end = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.005)


def drained(admin: redis.Redis, live: int) -> None:
    """Wait until the server has closed every connection a stall left behind (it reads
    and runs what each had sent before it sees the close), so `live` remain."""
    wait_for(lambda: int(admin.info("clients")["connected_clients"]) == live,
             "the server to process the connections the stall left behind")


def evalsha_calls(admin: redis.Redis) -> int:
    return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def store_keys(admin: redis.Redis, prefix: str) -> dict[Any, Any]:
    """Every key under `prefix` with its serialized value: the store's whole state."""
    keys = admin.keys(prefix.replace("{", "\\{").replace("}", "\\}") + "*")
    return {k: admin.dump(k) for k in keys}


def blocked_on_the_server(thread: threading.Thread) -> bool:
    """True iff `thread` is waiting for a reply from Redis (observed from its stack)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "read_response":
            return True
        frame = frame.f_back
    return False


def hostile(store: RedisRunStore) -> Any:
    """`store`, for calls with arguments of the wrong type on purpose."""
    return store


def worker_thread(store: RedisRunStore) -> threading.Thread:
    [thread] = [t for t in threading.enumerate() if t.name == store._worker.name]
    return thread


# --- item 1: a NaN clock reading ------------------------------------------------------

def test_RedisRunStore_nan_clock_is_refused_before_the_script(
        stores: Callable[..., RedisRunStore], clock: VirtualClock) -> None:
    """A NaN or infinite reading is ClockError (C1) and changes nothing; the old store
    ran the script with it, reaped "a" with NaN timestamps and then failed at ZADD."""
    store = stores(Policy(stale_after=30.0))
    store.start("a")
    before = store.snapshot()
    for reading in (math.nan, math.inf, -math.inf):
        clock.fault(reading)
        with pytest.raises(ClockError) as raised:
            store.start("b")
        assert "C1" in str(raised.value) and "'b'" in str(raised.value)
        with pytest.raises(InvalidArgument):
            hostile(store).start(17)  # the arguments are checked before the clock
        assert store.snapshot() == before
    clock.fault(None)
    clock.advance(31.0)
    assert store.start("b").created_at == 1031.0
    [a] = [r for r in store.snapshot() if r.run_id == "a"]
    assert a.status is Status.FAILED and a.terminated_at == 1031.0  # reaped now, not at NaN


#: where each argument sits in the script's ARGV (`redis.lua`); the op's own come last
ARGV_AT = {"op": 0, "request": 1, "now": 2, "ttl": 3, "stale_after": 7, "lazy": 8,
           "limit": -3, "cursor": -1, "status": -1, "id": -1}


@pytest.mark.parametrize(("field", "value"), [
    ("now", "nan"), ("now", "inf"), ("now", "-inf"), ("now", "x"), ("stale_after", "nan"),
    ("ttl", "inf"), ("ttl", "-1"), ("lazy", "2"), ("limit", "1e+17"), ("limit", "0"),
    ("cursor", "-1"), ("cursor", "99999999999999999999"), ("status", "paused"),
    ("id", ""), ("request", "not-hex"), ("op", "flushall"), ("prefix", "x:{}:"),
    ("arity", "extra"),
])
def test_redis_lua_checks_every_argument_before_its_first_write(
        stores: Callable[..., RedisRunStore], server: RedisServer, clock: VirtualClock,
        field: str, value: str) -> None:
    """Defence in depth: called with any bad argument, the script answers with a typed
    refusal and writes nothing, not even the clock's mark or the lazy sweep it would
    begin with (Redis keeps the writes of a script that fails halfway)."""
    store = stores(Policy(ttl=10.0, stale_after=5.0))
    store.start("a")
    clock.advance(6.0)  # "a" is stale: a lazy sweep would reap it
    admin = redis.Redis.from_url(server.url)
    before = store_keys(admin, store.prefix)
    policy = Policy(ttl=10.0, stale_after=5.0)
    op, args = ("list", ["10", "", "5"]) if field in ("limit", "cursor") else (
        ("transition", ["a", "running"]) if field == "status" else ("start", ["b"]))
    argv = script_args(op, "0" * 32, repr(clock()), policy, [], *args)
    keys = [store.prefix]
    if field == "prefix":
        keys = [value]
    elif field == "arity":
        argv.append(value)
    else:
        argv[ARGV_AT[field]] = value
    reply = store._script(keys=keys, args=argv)
    assert reply[0] == "err" and reply[1] in ("InvalidArgument", "ClockError"), reply
    assert store_keys(admin, store.prefix) == before
    admin.close()


# --- item 2: replies are not parsed from values a user chose --------------------------

#: ids a protocol might take for a reply, or a store might escape and forget (R1)
HOSTILE_IDS = ["ERR", "OK", "nil", "ok", "err", "0", "-1", "nan", "inf", "'", '"',
               "; DROP TABLE runs; --", "{", "}", "{jobs}", "*", "?", "a\nb", "\r\n",
               "\x00", "a\x00b", "😀", "𝄞" * 128, "x" * 128, " ", "[]", "{}", '["a"]',
               "r:", "m:", ":", "\\", "%d", "\u2028"]
PAYLOADS = ["", "ERR", "\x00", '"', "[]", "{}", "\\u0000", "😀", "a\nb", "/", "x" * 1000]


def test_RedisRunStore_ids_a_protocol_might_parse_round_trip(
        stores: Callable[..., RedisRunStore]) -> None:
    """Every valid id and payload comes back exactly; the old store raised ValueError
    for "ERR" (its reply looked like an error tag) after storing the run."""
    store = stores(Policy(max_events_per_run=len(PAYLOADS)))
    for rid in HOSTILE_IDS:
        run = store.start(rid)
        assert run.run_id == rid and store.get(rid) == run
        store.transition(rid, Status.RUNNING)
        for n, payload in enumerate(PAYLOADS, 1):
            assert store.append_event(rid, payload) == n
        assert store.get(rid).events == tuple(PAYLOADS)
    page = store.list_runs(limit=len(HOSTILE_IDS))
    assert [r.run_id for r in page.runs] == HOSTILE_IDS[::-1] and page.next_cursor is None
    assert {r.run_id: r for r in store.snapshot()} == {r.run_id: r for r in page.runs}
    assert store.transition("ERR", "completed").status is Status.COMPLETED
    with pytest.raises(RunboundError):
        store.heartbeat("ERR")  # refused, and named as it is
    assert len(store) == len(HOSTILE_IDS)


# --- item 4: close() against start_cleanup_worker() ------------------------------------

def test_RedisRunStore_close_orders_against_start_cleanup_worker(
        stores: Callable[..., RedisRunStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """A start_cleanup_worker() that runs once close() has begun stopping the worker is
    refused (StoreClosed): close marks the store closed first. The old close stopped the
    worker first, so a start in between left a worker sweeping a closed store."""
    store = stores()
    assert store.start_cleanup_worker(1.0)
    real_stop = store._worker.stop
    raced: list[object] = []

    def start_again() -> None:
        try:
            raced.append(store.start_cleanup_worker(1.0))
        except StoreClosed as error:
            raced.append(error)

    def stop_then_race(timeout: float | None = None) -> bool:
        stopped = real_stop(timeout)
        racer = threading.Thread(target=start_again)  # the other thread, right after stop
        racer.start()
        racer.join(GUARD)
        return stopped

    monkeypatch.setattr(store._worker, "stop", stop_then_race)
    try:
        store.close()
        assert len(raced) == 1 and isinstance(raced[0], StoreClosed), raced
        assert store.cleanup_workers_alive() == 0
    finally:
        real_stop(GUARD)  # on the old code, end the worker the race started


# --- item 5: a retried call is applied once ----------------------------------------------

def test_RedisRunStore_retried_call_is_applied_once(
        server: RedisServer, clock: VirtualClock) -> None:
    """The server stalls past the socket timeout; redis-py re-sends the script on a new
    connection, and when the server resumes it runs both copies. The request id makes
    the second a replay of the first's reply: the event lands once."""
    client = redis.Redis.from_url(
        server.url, decode_responses=True, socket_timeout=0.1, socket_connect_timeout=0.1,
        retry=Retry(ConstantBackoff(0.05), 200))
    admin = redis.Redis.from_url(server.url)
    with RedisRunStore(Policy(), clock, client=client, prefix="t:{retry}:") as store:
        store.start("a")
        store.transition("a", Status.RUNNING)
        calls = evalsha_calls(admin)
        resume = threading.Timer(1.0, os.kill, (server.pid, signal.SIGCONT))
        os.kill(server.pid, signal.SIGSTOP)
        resume.start()
        try:
            seq = store.append_event("a", "once")
        finally:
            resume.join()
        drained(admin, live=2)  # admin and the store's connection
        assert evalsha_calls(admin) - calls >= 2, "no retry happened: the test proved nothing"
        assert seq == 1 and store.get("a").events == ("once",)
    client.close()
    admin.close()


def test_RedisRunStore_unanswered_call_is_OutcomeUnknown(
        server: RedisServer, clock: VirtualClock) -> None:
    """When every retry times out, the caller gets OutcomeUnknown (N1), a RunboundError,
    not redis-py's TimeoutError; the call was in fact applied, once."""
    client = redis.Redis.from_url(
        server.url, decode_responses=True, socket_timeout=0.1, socket_connect_timeout=0.1,
        retry=Retry(NoBackoff(), 2))
    admin = redis.Redis.from_url(server.url)
    with RedisRunStore(Policy(), clock, client=client, prefix="t:{lost}:") as store:
        store.start("a")
        store.transition("a", Status.RUNNING)
        with stalled(server), pytest.raises(OutcomeUnknown) as raised:
            store.append_event("a", "maybe")
        assert isinstance(raised.value, RunboundError)
        assert "N1" in str(raised.value) and "'a'" in str(raised.value)
        drained(admin, live=1)
        assert store.get("a").events == ("maybe",)
    client.close()
    admin.close()


def test_redis_lua_replays_a_recorded_reply_and_turns_away_a_late_copy(
        stores: Callable[..., RedisRunStore], server: RedisServer, clock: VirtualClock) -> None:
    """The record itself, without a stall: a request sent twice is applied once, the
    second copy getting the first's reply exactly (ids of any bytes, empty lists, a
    refusal) and writing nothing; once acknowledged, a late copy is turned away (N1),
    writing nothing either."""
    store = stores(Policy(max_events_per_run=1))
    admin = redis.Redis.from_url(server.url)
    rid = "ERR\x00😀"
    calls = [("start", [rid]), ("transition", [rid, "running"]), ("append", [rid, ""]),
             ("append", [rid, "x"]), ("prune", []), ("heartbeat", ["nope"])]
    for n, (op, args) in enumerate(calls):
        argv = script_args(op, f"{n:032x}", repr(clock()), store.policy, [], *args)
        first = store._script(keys=[store.prefix], args=argv)
        state = store_keys(admin, store.prefix)
        clock.advance(1.0)  # a retry carries its first reading; time has moved meanwhile
        assert store._script(keys=[store.prefix], args=argv) == first
        assert store_keys(admin, store.prefix) == state
    assert store.get(rid).events == ("x",)
    acknowledge = script_args("get", "", repr(clock()), store.policy, [f"{0:032x}"], rid)
    store._script(keys=[store.prefix], args=acknowledge)
    state = store_keys(admin, store.prefix)
    late = script_args("start", f"{0:032x}", repr(clock()), store.policy, [], rid)
    assert store._script(keys=[store.prefix], args=late)[:2] == ["err", "OutcomeUnknown"]
    assert store_keys(admin, store.prefix) == state
    admin.close()


# --- item 7: every call that reads the clock raises the mark ---------------------------

def test_RedisRunStore_every_clocked_call_raises_the_mark(
        stores: Callable[..., RedisRunStore], clock: VirtualClock) -> None:
    """A read and a refused call raise the mark kept in Redis, so an expired run is not
    seen again when the clock steps back, and a later start is not stamped earlier. The
    old store raised it only in mutations that succeeded."""
    store = stores(Policy(ttl=10.0))
    for rid in ("read", "refused"):
        store.start(rid)
        store.transition(rid, Status.CANCELLED)  # terminated at 1000, expires at 1010
    clock.advance(10.0)
    with pytest.raises(UnknownRun):
        store.get("read")  # a read at 1010
    clock.step(-5.0)
    with pytest.raises(UnknownRun):
        store.get("read")
    assert store.list_runs(10).runs == ()
    assert store.start("c").created_at == 1010.0

    other = stores(Policy(ttl=10.0))
    other.start("done")
    other.transition("done", Status.CANCELLED)  # terminated at 1005
    clock.advance(10.0)  # 1015
    with pytest.raises(UnknownRun):
        other.heartbeat("nope")  # refused, at 1015
    clock.step(-5.0)  # 1010
    assert other.list_runs(10).runs == ()
    again = RedisRunStore(Policy(ttl=10.0), clock, url=other.url, prefix=other.prefix)
    with pytest.raises(UnknownRun):
        again.get("done")  # the mark lives in Redis: a restart keeps it
    again.close()


# --- item 8: arguments get typed errors -------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[RedisRunStore], object]]] = [
    ("R1", lambda s: s.start("a\ud800")),
    ("R1", lambda s: s.get("\udfff")),
    ("R3", lambda s: s.append_event("live", "x\ud800y")),
    ("L2", lambda s: s.list_runs(MAX_INT + 1)),
    ("L2", lambda s: s.list_runs(True)),
    ("L3", lambda s: s.list_runs(1, None, "²")),
    ("L3", lambda s: s.list_runs(1, None, "9" * 5000)),
    ("L3", lambda s: s.list_runs(1, None, str(MAX_INT + 1))),
    ("W1", lambda s: s.start_cleanup_worker(10**400)),
    ("W1", lambda s: s.start_cleanup_worker(math.nan)),
]


def test_RedisRunStore_bad_arguments_are_typed_and_change_nothing(
        stores: Callable[..., RedisRunStore]) -> None:
    """Each bad argument is InvalidArgument naming its rule, the store unchanged; limits
    and cursors up to 2**63-1 work (the old store sent limit + 1 into Lua arithmetic,
    and Redis refused "1e+17" as a LIMIT)."""
    store = stores(Policy())
    store.start("live")
    store.transition("live", Status.RUNNING)
    before = store.snapshot()
    for rule, call in BAD_CALLS:
        with pytest.raises(InvalidArgument) as raised:
            call(store)
        assert rule in str(raised.value), (rule, raised.value)
        assert store.snapshot() == before and store.cleanup_workers_alive() == 0
    for limit in (10**17, MAX_INT):
        assert [r.run_id for r in store.list_runs(limit).runs] == ["live"]
    assert store.list_runs(1, None, str(MAX_INT)).runs == before
    assert store.list_runs(1, "running", "0").runs == ()


# --- item 9: prefixes cannot collide ---------------------------------------------------

@pytest.mark.parametrize("prefix", ["x:{}:", "x:}:{", "no-tag:", "a:{b}", "a:{b}:c:",
                                    "app:{jobs}:run:", "a:{b}:{c}:", "", "a:{b\ud800}:"])
def test_RedisRunStore_refuses_a_prefix_outside_K1(
        server: RedisServer, clock: VirtualClock, prefix: str) -> None:
    """A prefix must be "<head>{<tag>}:" with the tag Redis Cluster reads closing it:
    otherwise keys could land in different slots, or one store's key space could hold
    another's ("app:{jobs}:run:" put the inner store's meta at the outer's run "meta")."""
    with pytest.raises(InvalidArgument) as raised:
        RedisRunStore(Policy(), clock, url=server.url, prefix=prefix)
    assert "K1" in str(raised.value)


PREFIX_TEXT = st.text(alphabet="ab{}:", max_size=8)


@given(PREFIX_TEXT, PREFIX_TEXT)
def test_K1_no_accepted_prefix_extends_another(p: str, q: str) -> None:
    """Two accepted prefixes are equal or neither starts the other, so two stores' key
    spaces (prefix + anything) are the same or disjoint."""
    accepted = []
    for prefix in (p, q, p + q):
        with suppress(InvalidArgument):
            accepted.append(check_prefix(prefix))
    for a in accepted:
        for b in accepted:
            assert a == b or not b.startswith(a)


@given(PREFIX_TEXT, st.text(max_size=20))
def test_K1_every_key_of_an_accepted_prefix_shares_its_slot(prefix: str, rest: str) -> None:
    try:
        check_prefix(prefix)
    except InvalidArgument:
        return
    assert key_slot((prefix + "r:" + rest).encode()) == key_slot((prefix + "m:").encode())


def test_RedisRunStore_keys_are_prefix_kind_colon(
        stores: Callable[..., RedisRunStore], server: RedisServer) -> None:
    """Every key a store writes is its prefix, a one-letter kind and ":", in one slot."""
    store = stores(Policy(ttl=5.0, max_events_per_run=1), prefix="app:{jobs}:")
    store.start("meta")
    store.transition("meta", Status.RUNNING)
    store.append_event("meta", "x")
    store.transition("meta", Status.CANCELLED)
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    keys = [str(k) for k in admin.scan_iter()]
    admin.close()
    assert keys and all(k.startswith("app:{jobs}:") and k[12] == ":" for k in keys), keys
    assert len({key_slot(k.encode()) for k in keys}) == 1


# --- item 10: the default clock is wall time --------------------------------------------

def test_RedisRunStore_default_clock_is_wall_time(server: RedisServer) -> None:
    """C2: a durable store's default clock survives a reboot and agrees between machines:
    time.time, not time.monotonic (which restarts at each boot)."""
    with RedisRunStore(Policy(), url=server.url, prefix="t:{wall}:") as store:
        before = time.time()
        run = store.start("a")
        after = time.time()
    assert before <= run.created_at <= after


# --- item 11: stop and close do not wait for a blocked sweep ------------------------------

@pytest.mark.parametrize("how", ["stop_cleanup_worker", "close"])
def test_RedisRunStore_stop_does_not_wait_for_a_stalled_server(
        server: RedisServer, clock: VirtualClock, how: str) -> None:
    """W3: the worker's sweep is blocked on a stalled server; stop_cleanup_worker() and
    close() return with the worker's thread ended, and no sweep runs after. The old store
    waited for the sweep, up to its socket timeout and every retry."""
    # a socket timeout far past GUARD: waiting for the blocked sweep cannot pass for prompt
    store = RedisRunStore(Policy(stale_after=5.0, sweep=SweepMode.BACKGROUND), clock,
                          url=server.url + "?socket_timeout=60", prefix="t:{stall}:")
    try:
        store.start("a")
        assert store.start_cleanup_worker(10.0)
        thread = worker_thread(store)
        assert clock.settle([thread])
        with stalled(server):
            clock.advance(10.0)  # the worker wakes and sweeps; the server does not answer
            wait_for(lambda: blocked_on_the_server(thread), "the sweep to block")
            if how == "close":
                store.close()
            else:
                assert store.stop_cleanup_worker(timeout=GUARD) is True
            ended = not thread.is_alive()
        assert ended, f"{how}() returned while the worker was still blocked"
        assert store.cleanup_workers_alive() == 0
        if how == "close":
            return
        admin = redis.Redis.from_url(server.url)
        drained(admin, live=2)  # the stopped sweep, sent before stop, may have run now
        admin.close()
        b = store.start("b")  # at 1010: only a sweep after the stop could reap it
        clock.advance(100.0)
        assert clock.sleepers() == 0
        assert [r for r in store.snapshot() if r.run_id == "b"] == [b]
    finally:
        store.close()
        if thread.is_alive():  # the old code: let its sweep finish, then it ends
            thread.join(GUARD * 10)


# --- item 12: a closed store refuses every call first ---------------------------------

def test_RedisRunStore_closed_store_refuses_before_looking_at_arguments(
        stores: Callable[..., RedisRunStore]) -> None:
    """L1 comes first: after close, len() and snapshot() raise StoreClosed, and so do
    calls with bad arguments, which a closed store does not look at."""
    store = stores()
    store.start("a")
    store.close()
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: len(store), store.snapshot, lambda: hostile(store).start(17),
        lambda: store.list_runs(0), lambda: store.start_cleanup_worker(-1),
        lambda: store.transition("a", "paused"), lambda: hostile(store).append_event("a", 3),
        lambda: store.get("\ud800"), store.prune, lambda: store.heartbeat("a")]
    for call in calls:
        with pytest.raises(StoreClosed):
            call()
    assert store.stop_cleanup_worker() is False and store.cleanup_workers_alive() == 0


def test_Run_values_cross_the_boundary_exactly(stores: Callable[..., RedisRunStore],
                                                clock: VirtualClock) -> None:
    """Times travel as exact decimal strings: a clock reading that 14 digits would round
    comes back as it was read."""
    store = stores()
    clock.step(1 / 3)  # 1000.3333333333334: 17 significant digits
    run = store.start("a")
    assert run == Run("a", Status.PENDING, clock(), clock(), seq=run.seq)
