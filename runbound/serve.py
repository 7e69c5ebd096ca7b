"""Serve any Python store over the wire protocol (`specs/wire.md`):

    python -m runbound.serve package.module:factory

It reads one request a line on stdin and writes one reply a line on stdout, so
`runbound conform --exec "python -m runbound.serve package.module:factory"` checks a
Python store through the same boundary as a store in any language. It is how the tests
show that the boundary changes no verdict.

Rules of this module:
- The store's clock reads the request's `now`: each request sets it (a NaN or an
  infinity too, so rule C1 is the store's to apply), and nothing else moves it.
- The store's own cleanup worker runs, asleep on that clock (`runbound.model.clock.sleep`): a
  `tick` wakes every sleeper, waits until each is asleep again or ended (the clock's
  `settle`), then answers null. So a tick is exactly what the store's worker does when
  its interval has passed, failures, backoff and extra threads included.
- The protocol's stdout is a duplicate of the original; the store's own prints go to
  stderr and cannot garble a reply.
- A thread-safe store (`capabilities_of(factory).thread_safe`, declared in `hello`) is
  served concurrently: the main thread reads the requests and hands each call to a small
  pool of threads, and each reply is written, whole, as it completes. The session
  requests and `close` are barriers (`BARRIERS`): the calls in flight end first, and the
  request is answered alone. A tick is one too: it moves the store's clock past the
  longest interval, which no call in flight may read. Any other store is served one
  request at a time.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, Any

from runbound.model.check.capabilities import capabilities_of
from runbound.model.check.conformance import BadFactorySpec, load_factory
from runbound.model.clock import VirtualClock, waits_elsewhere
from runbound.model.errors import RunboundError
from runbound.model.protocol import RunStore, StoreFactory, dispose, release
from runbound.model.spec import MAX_INTERVAL, OPERATIONS, shown
from runbound.model.wire import (
    CAPABILITY_FIELDS,
    VERSION,
    WireError,
    decode,
    dumps,
    encode,
    loads,
    policy_from_json,
    result_to_json,
)

#: real seconds a tick waits for the store's worker to go back to sleep (a guard)
SETTLE_SECONDS = 10.0
#: the threads serving a thread-safe store's calls: more than the kit's checks make at
#: once (a request beyond waits its turn)
POOL = 8
#: what a thread-safe store answers alone, once the calls in flight have ended
BARRIERS = frozenset({"hello", "reset", "reopen", "tick", "close"})


class Server:
    """One store at a time, made by `factory`, answering requests."""

    def __init__(self, factory: StoreFactory, name: str) -> None:
        self.factory = factory
        self.name = name
        self.store: RunStore | None = None
        self.clock = VirtualClock(0.0)
        self.policy: Any = None
        self.baseline: set[threading.Thread] = set()
        #: the threads serving requests (`Pool`): never the store's
        self.servers: set[threading.Thread] = set()
        self.thread_safe: bool | None = None  # as `hello` declared it

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        try:
            if op == "hello":
                return {"result": self._hello(message)}
            if op == "reset":
                self._drop()
                self.policy = policy_from_json(message.get("policy"))
                self._build(self.factory)
                return {"result": None}
            if op == "reopen":
                self._reopen()
                return {"result": None}
            if self.store is None:
                raise WireError(f"{op!r} before reset")
            self.clock.fault(_reading(message.get("now")))
            if op == "tick":
                self._tick()
                return {"result": None}
            if op not in OPERATIONS:
                raise WireError(f"no operation {shown(op)}")
            args = [decode(a) for a in message.get("args", [])]
        except WireError as error:
            return {"error": {"class": "ProtocolError", "run_id": "*", "state": "n/a",
                              "rule": f"X5: {error}"}}
        try:
            result = len(self.store) if op == "len" else getattr(self.store, op)(*args)
        except RunboundError as error:
            return {"error": {"class": type(error).__name__, "run_id": _safe(error.run_id),
                              "state": str(error.state), "rule": error.rule}}
        except Exception as error:  # a bug of the store: a result the kit compares
            return {"error": {"class": type(error).__name__, "run_id": "*",
                              "state": "n/a", "rule": str(error)}}
        return {"result": result_to_json(result)}

    def _hello(self, message: dict[str, Any]) -> dict[str, Any]:
        if message.get("protocol") != VERSION:
            raise WireError(f"this adapter speaks protocol {VERSION}, the kit asked for "
                            f"{shown(message.get('protocol'))}")
        caps = capabilities_of(self.factory)
        self.thread_safe = caps.thread_safe
        return {"protocol": VERSION, "name": self.name,
                "capabilities": {f: getattr(caps, f) for f in CAPABILITY_FIELDS}}

    def _build(self, make: Any) -> None:
        self.clock = VirtualClock(0.0)
        self.baseline = set(threading.enumerate())
        self.store = make(self.policy, self.clock) if make is self.factory else make()

    def _drop(self) -> None:
        if self.store is None:
            return
        # the kit closed it already, maybe: say why the close raised, and go on
        dispose(self.store, on_error=lambda error: print(
            f"serve: close() raised {error!r}", file=sys.stderr))
        self.store = None

    def _reopen(self) -> None:
        """As the checks restart an in-process store: its `reopen()` if it has one, else
        a new store from the factory (a store in memory starts empty)."""
        old = self.store
        if old is None:
            raise WireError("reopen before reset")
        release(old)
        reopen = getattr(old, "reopen", None)
        if callable(reopen):
            clock = self.clock
            self.baseline = set(threading.enumerate())
            self.store = reopen()
            self.clock = clock
        else:
            self._build(self.factory)

    def _tick(self) -> None:
        """What the store's worker does when its interval has passed: every sleeper on
        the clock wakes (the clock moves past the longest interval W1 allows), and the
        tick ends when each thread the store started sleeps again or has ended."""
        self.clock.step(MAX_INTERVAL + 1.0)
        threads = [t for t in threading.enumerate()
                   if t not in self.baseline and t not in self.servers]
        if not self.clock.settle(threads, SETTLE_SECONDS, elsewhere=waits_elsewhere):
            raise WireError("the store's worker did not go back to sleep on its clock "
                            "(runbound.model.clock.sleep, rule W2)")


def _reading(now: object) -> float:
    value = decode(now)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"now must be a number, got {shown(value)}")
    return value


def _safe(value: object) -> Any:
    try:
        return encode(value)
    except WireError:
        return repr(value)


class Pool:
    """The threads answering a thread-safe store's calls, and the count of calls in flight
    (`drain` waits for none). Each reply is written whole, under the write lock."""

    def __init__(self, server: Server, write: Callable[[dict[str, Any]], None]) -> None:
        self.server = server
        self.write = write
        self.jobs: queue.Queue[dict[str, Any]] = queue.Queue()
        self.idle = threading.Condition()
        self.busy = 0  # guarded by idle
        for k in range(POOL):
            thread = threading.Thread(target=self._serve, name=f"runbound-serve-{k}",
                                      daemon=True)
            server.servers.add(thread)
            thread.start()

    def submit(self, message: dict[str, Any]) -> None:
        with self.idle:
            self.busy += 1
        self.jobs.put(message)

    def drain(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.busy == 0)

    def _serve(self) -> None:
        while True:
            message = self.jobs.get()
            try:
                self.write({"id": message.get("id"), **self.server.answer(message)})
            except BaseException:  # the adapter's own bug: die loudly, as serially (X1)
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(70)
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()


def serve(factory: StoreFactory, name: str, stdin: IO[bytes], stdout: IO[str]) -> int:
    """Answer requests until stdin ends; 0."""
    server = Server(factory, name)
    lock = threading.Lock()
    pool: Pool | None = None

    def write(reply: dict[str, Any]) -> None:
        text = dumps(reply) + "\n"
        with lock:
            stdout.write(text)
            stdout.flush()

    for raw in stdin:
        try:
            message = loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, WireError) as error:
            write({"id": None, "error": {"class": "ProtocolError", "run_id": "*",
                                         "state": "n/a", "rule": f"X3: {error}"}})
            continue
        if pool is not None and message.get("op") not in BARRIERS:
            pool.submit(message)
            continue
        if pool is not None:
            pool.drain()
        write({"id": message.get("id"), **server.answer(message)})
        if pool is None and server.thread_safe:  # declared in hello: serve at once
            pool = Pool(server, write)
    if pool is not None:
        pool.drain()
    server._drop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runbound.serve package.module:factory", file=sys.stderr)
        return 2

    try:
        factory = load_factory(args[0])
    except BadFactorySpec as error:
        print(f"serve: {error}", file=sys.stderr)
        return 2
    # the protocol keeps the real stdout; anything the store prints goes to stderr
    out = os.fdopen(os.dup(1), "w", encoding="ascii")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return serve(factory, args[0], sys.stdin.buffer, out)


if __name__ == "__main__":
    raise SystemExit(main())
