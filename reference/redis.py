"""RedisRunStore: for several processes or machines sharing one store.

Rules of this module:
- Every call checks, in the spec's order (`specs/lifecycle.md`): L1 the store is open,
  its arguments (`runbound.model.spec`'s checks), then C1 its one clock reading, refused here if
  NaN or infinite. Only then is the script called, and the script checks everything
  again before its first write (`redis.lua`, rule 1): a script that fails halfway keeps
  its writes.
- Every operation is one call of one Lua script (`redis.lua`), so it is atomic on the
  server; the script journals its changes, so a refused call, lazy sweep included,
  changes nothing (I10). Replies are tagged ("ok"/"err"), never recognised by a value.
- Each mutation carries a request id (uuid4), under which the script records its reply:
  a client that re-sends the call after a timeout (redis-py retries by default) gets the
  recorded reply instead of applying it twice. If no attempt is answered, the caller
  gets `OutcomeUnknown` (N1), a RunboundError, never redis-py's own errors.
- Retention lives in sorted sets (terminal runs by `terminated_at`, active runs by
  `updated_at`, each tie-broken by start order; listing by `seq`), so an eviction is
  O(log n) and a page walks only its own entries.
- Keys: prefix + a one-letter kind + ":" (`redis.lua` lists them), the prefix of the form
  K1 (`check_prefix`), so a store's keys share one Redis Cluster slot and two stores'
  keys never meet.
- Time: the store's only clock is the factory's `clock` (wall time by default, C2),
  never Redis `TIME`, so the checks' virtual clock governs it; the mark of C1 lives in
  Redis, so a restart keeps it. Times travel as Python's exact decimal strings.
- The cleanup worker sweeps over a connection of its own, which stopping cuts (W3): a
  sweep blocked on a stalled server fails at once instead of holding up stop/close.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runbound.model import errors, rules, spec
from runbound.model.clock import Clock
from runbound.model.lifecycle import Status, as_status
from runbound.model.policy import Policy
from runbound.model.records import Page, Run, SweepResult
from runbound.reference.worker import CleanupWorker, WorkerMixin

# the script, with the one table of rule texts written in (model/rules.py)
LUA = (Path(__file__).parent / "redis.lua").read_text().replace("__RULES__", rules.lua_table())


class OutcomeUnknown(errors.RunboundError):
    """The server did not answer any attempt of a call (rule N1): it may or may not have
    been applied. A mutation is applied at most once whatever happens (its request id),
    so reading the run again tells which."""


N1 = "N1: the server did not answer; the call may or may not have been applied"

ERRORS: dict[str, type[errors.RunboundError]] = {
    name: getattr(errors, name) for name in
    ("UnknownRun", "NotActive", "RunAlreadyActive", "AdmissionRefused", "IllegalTransition",
     "InvalidArgument", "ClockError")}
ERRORS["OutcomeUnknown"] = OutcomeUnknown

#: the calls that read the clock (C1), and among them the mutations, which the script
#: records under their request id (a read is safe to run twice: its retry is a new read)
RECORDED = frozenset({"start", "transition", "heartbeat", "append", "prune"})
CLOCKED = RECORDED | {"get", "list"}
#: how long a request's record outlives its call (ms): past any retry of redis-py's (its
#: socket timeout times its retries) with room for a copy the network delivers late
RECORD_TTL_MS = 120_000
#: most acknowledgements one call carries (each shrinks a record to "")
MAX_ACKS = 64

#: K1: "<head>{<tag>}:" -- a head with no "{", then the hash tag Redis Cluster reads (the
#: first "{", the first "}" after it, something between), closing the prefix.
_PREFIX = re.compile(r"[^{]*\{[^}]+\}:")


def check_prefix(prefix: object) -> str:
    """K1: a prefix whose keys share one cluster slot and never meet another store's.

    Why no two stores' keys can meet: a key both stores hold starts with both prefixes,
    so one prefix starts the other. Say q = p + w with w non-empty, both of the form
    "<head>{<tag>}:". The first "{" of q is the first of p (p's head has none), and the
    first "}" after it is p's closing one (p's tag has none). That "}" closes the tag of q
    too, so for q to be of the form it must be q's second-to-last character -- it is p's,
    so q = p. Hence two stores share either every key (the same prefix: one store) or
    none. (The old layout allowed "app:{jobs}:" and "app:{jobs}:run:", whose meta key was
    the first store's run "meta".) Every key is prefix + kind + ":" + rest, so the kinds
    never meet each other either; and all carry the prefix's tag, hence one slot."""
    if (not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix)
            or any("\ud800" <= ch <= "\udfff" for ch in prefix)):
        raise errors.InvalidArgument(
            prefix if isinstance(prefix, str) else repr(prefix), "n/a",
            "K1: the prefix must be <head>{<tag>}: -- a hash tag (the first '{', the "
            "first '}' after it, non-empty between) that ends the prefix before its ':'")
    return prefix


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


def script_args(op: str, request: str, now: str, policy: Policy, acks: Sequence[str],
                *args: str) -> list[str]:
    """ARGV of one script call, in `redis.lua`'s order."""
    p = policy
    return [op, request, now, _opt(p.ttl), _opt(p.max_terminal), _opt(p.max_active),
            _opt(p.max_events_per_run), _opt(p.stale_after), "1" if p.lazy else "0",
            str(RECORD_TTL_MS), str(len(acks)), *acks, *args]


def _run(row: Sequence[Any]) -> Run:
    run_id, seq, status, created, updated, terminated, events, dropped = row
    return Run(run_id, Status(status), float(created), float(updated),
               None if terminated == "" else float(terminated), tuple(json.loads(events)),
               int(dropped), int(seq))


def _text(reply: Any) -> Any:
    """A reply from a client without decode_responses, as text."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, list):
        return [_text(item) for item in reply]
    return reply


class _WorkerLink:
    """The cleanup worker's own connections to the server, which `cut()` severs from
    another thread: a sweep blocked on a stalled server fails at once (its socket is shut
    down), and no new connection can be made after, so stopping never waits for a socket
    timeout (W3). No retries: a sweep that fails is the worker's to try again."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        # _lock guards _cut and _connections: a connection is either admitted before the
        # cut (and cut with the rest) or refused after it, never missed
        self._lock = threading.Lock()
        self._cut = False
        self._connections: list[Any] = []
        kwargs = {**pool.connection_kwargs, "redis_connect_func": self._admit,
                  "retry": Retry(NoBackoff(), 0)}
        self.client = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **kwargs))

    @property
    def cut_off(self) -> bool:
        with self._lock:
            return self._cut

    def _admit(self, connection: Any) -> None:
        """redis-py calls this once a connection's socket is open, before its handshake."""
        with self._lock:
            if self._cut:
                raise redis.ConnectionError("the cleanup worker is stopping")
            if connection not in self._connections:
                self._connections.append(connection)
        connection.on_connect()

    def cut(self) -> None:
        """Sever every connection, now and to come. A sweep already sent stays in the
        stalled server's buffers and runs when it resumes -- no client can take back
        bytes it has sent -- but it was started before the stop, and none starts after."""
        with self._lock:
            self._cut = True
            connections = list(self._connections)
        for connection in connections:
            # shutdown, not close: it wakes a recv blocked in the worker's thread, which
            # then closes the socket itself (redis-py keeps it as `_sock`)
            sock = getattr(connection, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):  # closed meanwhile by its own thread
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # the pool is ours, not the client's: Redis.close() leaves a pool it was given
        self.client.connection_pool.disconnect()


class RedisRunStore(WorkerMixin):
    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock = time.time, *,
                 url: str = "redis://127.0.0.1:6379/0", prefix: str = "runbound:{runs}:",
                 client: redis.Redis | None = None) -> None:
        self.policy, self.prefix, self.url = policy, check_prefix(prefix), url
        self._clock = clock
        self._own_client = client is None
        self._client = client or redis.Redis.from_url(url, decode_responses=True)
        self._decode = not self._client.connection_pool.connection_kwargs.get(
            "decode_responses", False)
        self._script = self._client.register_script(LUA)
        #: request ids whose replies arrived: the next calls acknowledge them (thread-safe)
        self._acks: deque[str] = deque()
        # _life guards _closed and _link, and is held while a worker starts or stops, so
        # close() and the worker's start and stop are ordered: no worker starts on a
        # closed store, and a start never meets a stop half done
        self._life = threading.Lock()
        self._closed = False
        #: the running worker's connections; None iff no worker is running
        self._link: _WorkerLink | None = None
        self._worker = CleanupWorker(self._sweep_for_worker, self._clock)

    # --- one call ------------------------------------------------------------------

    def _open(self) -> None:
        if self._closed:
            raise errors.StoreClosed("*", "closed", rules.text("L1"))

    def _reading(self, who: str) -> str:
        """C1: one clock reading, as an exact decimal string; ClockError if not finite."""
        reading = self._clock()
        try:
            value = float(reading) if isinstance(reading, int | float) else math.nan
        except OverflowError:  # an int past any float
            value = math.nan
        if not math.isfinite(value):
            raise errors.ClockError(who, "n/a", rules.text("C1", reading=repr(reading)))
        return repr(value)

    def _call(self, op: str, who: str, *args: str, client: redis.Redis | None = None
              ) -> list[Any]:
        """Run `op` in the script (arguments already checked); its reply after the tag."""
        now = self._reading(who) if op in CLOCKED else ""
        request = uuid.uuid4().hex if op in RECORDED else ""
        acks: list[str] = []
        while len(acks) < MAX_ACKS and self._acks:
            acks.append(self._acks.popleft())
        try:
            reply = self._script(keys=[self.prefix], args=script_args(
                op, request, now, self.policy, acks, *args), client=client or self._client)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            # the acks it carried may be lost too: their records end with their TTL
            raise OutcomeUnknown(who, "unknown", N1) from error
        if self._decode:
            reply = _text(reply)
        if request:
            self._acks.append(request)
        if reply[0] == "ok":
            return list(reply[1:])
        _, kind, run_id, state, rule = reply
        raise ERRORS[kind](run_id, state, rule)

    # --- the operations ------------------------------------------------------------

    def start(self, run_id: str) -> Run:
        self._open()
        rid = spec.check_run_id(run_id)
        return _run(self._call("start", rid, rid))

    def transition(self, run_id: str, status: Status | str) -> Run:
        self._open()
        rid = spec.check_run_id(run_id)
        return _run(self._call("transition", rid, rid, as_status(rid, status).value))

    def heartbeat(self, run_id: str) -> Run:
        self._open()
        rid = spec.check_run_id(run_id)
        return _run(self._call("heartbeat", rid, rid))

    def append_event(self, run_id: str, payload: str) -> int:
        self._open()
        rid = spec.check_run_id(run_id)
        return int(self._call("append", rid, rid, spec.check_payload(rid, payload))[0])

    def get(self, run_id: str) -> Run:
        self._open()
        rid = spec.check_run_id(run_id)
        return _run(self._call("get", rid, rid))

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        self._open()
        count = spec.check_limit(limit)
        wanted = "" if status is None else as_status("*", status).value
        below = spec.parse_cursor(cursor)
        rows, next_cursor = self._call("list", "*", str(count), wanted,
                                       "" if below is None else str(below))
        return Page(tuple(_run(r) for r in rows), next_cursor or None)

    def prune(self) -> SweepResult:
        self._open()
        return self._prune(self._client)

    def _prune(self, client: redis.Redis) -> SweepResult:
        reaped, expired, evicted = self._call("prune", "*", client=client)
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)),
                           tuple(sorted(evicted)))

    def __len__(self) -> int:
        self._open()
        return int(self._call("len", "*")[0])

    def snapshot(self) -> tuple[Run, ...]:
        self._open()
        return tuple(_run(r) for r in self._call("snapshot", "*")[0])

    # --- the worker and the store's life -------------------------------------------

    def start_cleanup_worker(self, interval: float) -> bool:
        with self._life:
            self._open()
            seconds = spec.check_interval(interval)
            if self._link is not None:
                return False
            self._link = _WorkerLink(self._client)
            return self._worker.start(seconds)

    def _sweep_for_worker(self) -> SweepResult | None:
        link = self._link
        if link is None:
            return None  # stopped between the worker's wake-up and this sweep
        try:
            return self._prune(link.client)
        except errors.RunboundError:
            if link.cut_off:
                return None  # stop() severed it: not a failure worth a log line
            raise

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        with self._life:
            link, self._link = self._link, None
            if link is not None:
                link.cut()
            stopped = self._worker.stop(timeout)
        if link is not None:
            link.close()
        return stopped

    def close(self) -> None:
        with self._life:
            if self._closed:
                return
            # closed first, as the reference store does: once this is set no worker can
            # start, so the stop below is the last (a start between a stop and the mark
            # once left a worker sweeping a closed store)
            self._closed = True
            link, self._link = self._link, None
        if link is not None:
            link.cut()
        self._worker.stop(timeout=10.0)
        if link is not None:
            link.close()
        if self._own_client:
            self._client.close()

    def reopen(self) -> RedisRunStore:
        """The process restarts: a new store on the same server and prefix."""
        self.close()
        return RedisRunStore(self.policy, self._clock, url=self.url, prefix=self.prefix,
                             client=None if self._own_client else self._client)

    def __enter__(self) -> RedisRunStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
