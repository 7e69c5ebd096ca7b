"""A store that is a process: the kit's side of the wire protocol (`specs/wire.md`).

`exec_factory(command)` is a `StoreFactory`: each store it builds is a `ProcessRunStore`,
a proxy that implements `runbound.model.protocol.RunStore` by writing one JSON request a line to
the program's stdin and reading one reply a line from its stdout. The checkers drive it
as they drive any store.

Rules of this module:
- A process is started once and reused: a store's `release()` (the checkers call it when
  they are done with a store) hands a healthy process back to its factory, and the next
  store from the factory `reset`s it with its policy. A process that broke the protocol
  is killed, never reused.
- Every reply is awaited at most `timeout` real seconds (a guard, not a measure). A
  crash, a hang, a line that is not a reply, a reply to another request, or a result of
  the wrong shape raises `StoreProcessError` naming the request; the proxy is then
  broken for good, and every later call raises the same error: a check that meets it
  reports a failure, never a pass.
- Reading uses `select` on the pipe, not a reader thread: the checkers count the threads
  a store starts, and the only threads this proxy starts are its worker's tickers.
- The worker: the store runs no timer over the wire. Each worker the store says it runs
  (`cleanup_workers_alive()`, asked after every start, stop and close) is a ticker thread
  here, which sleeps on the checker's clock (`runbound.model.clock.sleep`, rule W2) and sends
  `tick` at each wake. So the store's answers become threads the checkers count (I11,
  I16), and its sweeps still show in what it retains (E1, E2, I14).
- Concurrency follows the store's word: a store that declares `thread_safe` in `hello`
  gets requests from several threads at once, each caller waiting for the reply with its
  own `id` (so I19 tests the store); any other store gets one request at a time under a
  lock (and I19 is left out, `WireCapabilities`). With no reader thread, the callers
  share the reading (`_Process.request`): one at a time is the reader, files every reply
  under its id and wakes its caller, and hands the role on when its own reply came.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import shlex
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from runbound.model import errors
from runbound.model.clock import Clock, sleep
from runbound.model.errors import RunboundError, StoreProcessError
from runbound.model.policy import Policy
from runbound.model.protocol import Capabilities, Forwarding
from runbound.model.spec import shown
from runbound.model.wire import (
    CAPABILITY_FIELDS,
    RESULTS,
    VERSION,
    WireError,
    decode,
    dumps,
    encode,
    loads,
    policy_to_json,
)

#: real seconds the proxy waits for one reply: a guard against a hung store
DEFAULT_TIMEOUT = 10.0
#: idle processes a factory keeps for reuse
_IDLE = 4
#: the longest line read from a store (64 MiB): a guard against a runaway writer
_MAX_LINE = 64 << 20


@dataclass(frozen=True)
class WireCapabilities(Capabilities):
    """A process store's capabilities: what it declared in `hello`, with the checks the
    boundary itself makes meaningless left out, and why."""

    def skipped(self) -> dict[str, str]:
        out = super().skipped()
        out["I18"] = ("is behind the wire: the worker's backoff and its log lines are the "
                      "proxy's tickers', not the store's (its log is its own stderr)")
        if not self.thread_safe:
            out["I19"] = ("does not declare thread_safe in hello: the proxy serialises its "
                          "requests on the one stdin/stdout connection, so concurrent calls "
                          "never reach the store at once")
        return out


def _error_classes() -> dict[str, type[RunboundError]]:
    return {name: cls for name, cls in vars(errors).items()
            if isinstance(cls, type) and issubclass(cls, RunboundError)
            and cls not in (RunboundError, StoreProcessError)}


#: the spec's errors, by the names a reply carries
ERRORS = _error_classes()


class ForeignError(Exception):
    """A reply naming an error the spec does not have (a bug of the store, such as an
    exception escaping it): a result like any other, which never equals the model's."""


class _Process:
    """One running store program and its pipes."""

    def __init__(self, command: Sequence[str], timeout: float) -> None:
        self.command = list(command)
        self.timeout = timeout
        # kept open for the process's life (its tail goes into errors): closed in kill()
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.popen = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self.stderr)
        except OSError as error:
            raise StoreProcessError("*", "not started", f"X1: cannot start "
                                    f"{shlex.join(self.command)}: {error}") from None
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.stdin = self.popen.stdin
        self.fd = self.popen.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buffer = b""  # the reader's only
        #: guards next_id, the requests in flight, the replies filed and the reader role
        self._mutex = threading.Lock()
        self._write = threading.Lock()  # one line at a time on stdin
        self.next_id = 0
        #: the requests in flight: id -> the lock its caller waits on (`_await`)
        self._waiting: dict[int, threading.Lock] = {}
        #: the replies read and not yet taken by their callers, by id
        self._replies: dict[int, dict[str, Any]] = {}
        self._reading = False  # a caller is the reader
        #: (rule, state, why) once the process broke the protocol: broken for good
        self.failure: tuple[str, str, str] | None = None
        self.capabilities: WireCapabilities | None = None
        self.name = ""

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()
        with contextlib.suppress(Exception):
            self.popen.wait(5.0)
        for pipe in (self.popen.stdin, self.popen.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        self.stderr.close()

    def stderr_tail(self) -> str:
        with contextlib.suppress(Exception):
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 600))
            tail = self.stderr.read().decode("utf-8", "replace").strip()
            if tail:
                return f"; its stderr ends: {tail[-600:]!r}"
        return ""

    def _line(self, deadline: float) -> bytes | None:
        """The next line from stdout; None at end of file; raises TimeoutError."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self.buffer += chunk
            if len(self.buffer) > _MAX_LINE:
                raise WireError(f"a line longer than {_MAX_LINE} bytes")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def request(self, message: dict[str, Any], what: str, run_id: object) -> Any:
        """Send one request and return its reply (the whole object). Safe to call from
        several threads at once: the requests go out without waiting for each other's
        replies, and each caller gets the reply with its own id. (Whether the store may
        see them at once is the caller's business: `ProcessRunStore` holds a lock for a
        store that did not declare `thread_safe`.)"""
        wake = threading.Lock()
        wake.acquire()  # released when this caller should look again
        with self._mutex:
            self.next_id += 1
            ident = self.next_id
            self._waiting[ident] = wake
        text = f"request #{ident} {what}"
        try:
            if self.failure is None:
                line = (dumps({"id": ident, **message}) + "\n").encode("ascii")
                try:
                    with self._write:
                        self.stdin.write(line)
                        self.stdin.flush()
                except (BrokenPipeError, OSError, ValueError):
                    self.fail("X1", "exited", f"the process is gone (exit code "
                              f"{self.popen.poll()}) before it could read the request")
            reply = self._await(ident, wake, time.monotonic() + self.timeout)
            if reply is None:
                raise self.error(text, run_id)
            return reply
        finally:
            with self._mutex:  # (gone already, unless the write raised)
                self._waiting.pop(ident, None)
                self._replies.pop(ident, None)

    def _await(self, ident: int, wake: threading.Lock, deadline: float
               ) -> dict[str, Any] | None:
        """The reply to request `ident`, or None once the process is broken. A caller
        whose reply has not come either is the reader (reads and files replies until its
        own is filed, then hands the role on) or waits on `wake`. The wait is a lock's
        acquire, not a `threading.Condition`: the checkers read a thread blocked in
        `threading`'s own waits as a worker sleeping on real time (rule W2,
        `runbound.model.clock.waits_elsewhere`), and a ticker waits here for its tick."""
        while True:
            with self._mutex:
                # a caller leaves `_waiting` in the same step as it takes its reply (or
                # the failure): a reader handing its role on must find only callers
                # still waiting, or the role goes to one that is leaving and nobody reads
                if self.failure is not None:
                    del self._waiting[ident]
                    return None
                if ident in self._replies:
                    del self._waiting[ident]
                    return self._replies.pop(ident)
                lead = not self._reading
                self._reading = True
            if time.monotonic() >= deadline:
                if lead:
                    with self._mutex:
                        self._reading = False
                self.fail("X2", "hung", f"no reply within {self.timeout:g} s")
            elif lead:
                try:
                    self._read_until(ident, deadline)
                finally:
                    with self._mutex:
                        self._reading = False
                        # a caller still waiting for its reply becomes the reader
                        for other, lock in self._waiting.items():
                            if other not in self._replies and other != ident:
                                if lock.locked():
                                    lock.release()
                                break
            else:
                wake.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def _read_until(self, ident: int, deadline: float) -> None:
        """Read replies and file each under its id, waking its caller, until the reply
        to `ident` is filed or the process broke (then `failure` says how)."""
        while True:
            with self._mutex:
                if ident in self._replies or self.failure is not None:
                    return
            try:
                line = self._line(deadline)
            except TimeoutError:
                self.fail("X2", "hung", f"no reply within {self.timeout:g} s")
                return
            except WireError as error:
                self.fail("X3", "garbled", str(error))
                return
            if line is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(self.timeout)
                self.fail("X1", "exited", f"the process exited (exit code "
                          f"{self.popen.poll()}) without replying")
                return
            try:
                reply = loads(line.decode("utf-8"))
            except (UnicodeDecodeError, WireError) as error:
                self.fail("X3", "garbled", f"a line that is not a reply: "
                          f"{shown(line.decode('utf-8', 'replace'))}: {error}")
                return
            if ("result" in reply) == ("error" in reply) or set(reply) - {"id", "result",
                                                                            "error"}:
                self.fail("X5", "protocol", f"a reply must have exactly one of result "
                          f"and error: {shown(line.decode())}")
                return
            to = reply.get("id")
            with self._mutex:
                # an int exactly: JSON's true or 1.0 would find request 1 in a dict
                if type(to) is not int or to not in self._waiting or to in self._replies:
                    asked = ", ".join(f"#{i}" for i in self._waiting
                                      if i not in self._replies)
                    flight = f"where {asked} was asked" if asked else "with none asked"
                    failed = ("X4", "out of step", f"a reply to request {shown(to)} "
                              f"{flight}: {shown(line.decode())}")
                else:
                    self._replies[to] = reply
                    waiting = self._waiting[to]
                    if to != ident and waiting.locked():
                        waiting.release()
                    continue
            self.fail(*failed)
            return

    def fail(self, rule: str, state: str, why: str) -> None:
        """The process broke the protocol: it is killed, and every caller, waiting now
        or to come, raises the first such failure (`error`)."""
        with self._mutex:
            if self.failure is not None:
                return
            self.failure = (rule, state, why)
            self.kill_quietly()
            for lock in self._waiting.values():
                if lock.locked():
                    lock.release()

    def error(self, text: str, run_id: object) -> StoreProcessError:
        """The failure, as the error of the request `text` (say "request #3 get('a')")."""
        assert self.failure is not None
        rule, state, why = self.failure
        return StoreProcessError(run_id, state, f"{rule}: {why} (the store "
                                 f"{shlex.join(self.command)} at {text})"
                                 f"{self.stderr_tail()}")

    def kill_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.popen.kill()


#: every factory alive, so that their idle processes are ended at exit
_FACTORIES: weakref.WeakSet[ExecFactory] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    for factory in list(_FACTORIES):
        factory.shutdown()


class ExecFactory:
    """`(policy, clock) -> ProcessRunStore`, each store on a process of `command` (started
    when none is idle, `reset` with the policy otherwise). Picklable: a check in another
    process starts processes of its own."""

    def __init__(self, command: Sequence[str] | str, *, timeout: float = DEFAULT_TIMEOUT
                 ) -> None:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        self.timeout = timeout
        self._init()

    def _init(self) -> None:
        self._idle: list[_Process] = []
        self._lock = threading.Lock()
        self._caps: WireCapabilities | None = None
        self.__name__ = shlex.join(self.command)
        _FACTORIES.add(self)

    def __getstate__(self) -> dict[str, Any]:
        return {"command": self.command, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.command, self.timeout = state["command"], state["timeout"]
        self._init()

    def __repr__(self) -> str:
        return f"exec_factory({shlex.join(self.command)!r})"

    @property
    def capabilities(self) -> WireCapabilities:
        """What the store declared in `hello` (a process is started to ask)."""
        if self._caps is None:
            process = self._acquire()
            self._caps = process.capabilities
            self.give_back(process)
        assert self._caps is not None
        return self._caps

    def __call__(self, policy: Policy, clock: Clock) -> ProcessRunStore:
        process = self._acquire()
        try:
            reply = process.request({"op": "reset", "policy": policy_to_json(policy)},
                                    "reset", "*")
            if reply.get("result", 0) is not None:
                raise StoreProcessError("*", "protocol", f"X5: reset answered {reply!r}, "
                                        "not null")
        except StoreProcessError:
            process.kill()
            raise
        return ProcessRunStore(self, process, clock)

    def _acquire(self) -> _Process:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        process = _Process(self.command, self.timeout)
        try:
            self._hello(process)
        except BaseException:
            process.kill()
            raise
        return process

    def _hello(self, process: _Process) -> None:
        reply = process.request({"op": "hello", "protocol": VERSION}, "hello", "*")
        result = reply.get("result")
        if "error" in reply or not isinstance(result, dict) \
                or result.get("protocol") != VERSION:
            raise StoreProcessError("*", "protocol", f"X5: hello: the kit speaks protocol "
                                    f"{VERSION}, the store answered {shown(reply)}")
        declared = result.get("capabilities", {})
        if not isinstance(declared, dict) or set(declared) - set(CAPABILITY_FIELDS):
            raise StoreProcessError("*", "protocol", f"X5: hello: capabilities must be an "
                                    f"object of {', '.join(CAPABILITY_FIELDS)}, got "
                                    f"{shown(declared)}")
        process.capabilities = WireCapabilities(**declared)
        process.name = str(result.get("name", ""))

    def give_back(self, process: _Process) -> None:
        with self._lock:
            if len(self._idle) < _IDLE and process.failure is None \
                    and process.popen.poll() is None:
                self._idle.append(process)
                return
        process.kill()

    def take_back(self, process: _Process) -> bool:
        """Take `process` out of the idle list again (a restart right after release)."""
        with self._lock:
            if process in self._idle:
                self._idle.remove(process)
                return True
        return False

    def shutdown(self) -> None:
        """Kill the idle processes (at exit: each also ends when its stdin closes)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for process in idle:
            process.kill()


def exec_factory(command: Sequence[str] | str, *, timeout: float = DEFAULT_TIMEOUT
                 ) -> ExecFactory:
    """A StoreFactory whose stores are processes of `command` (a list, or a shell-like
    string split by `shlex`) speaking `specs/wire.md`."""
    return ExecFactory(command, timeout=timeout)


class ProcessRunStore(Forwarding):
    """One store on a process: `runbound.model.protocol.RunStore`, over the wire."""

    def __init__(self, factory: ExecFactory, process: _Process, clock: Clock) -> None:
        self._factory = factory
        self._process = process
        self._clock = clock
        self.capabilities = process.capabilities
        #: as declared in `hello`: then requests from several threads go out at once
        self.thread_safe = bool(process.capabilities and process.capabilities.thread_safe)
        #: held for each request to a store that is not thread-safe: one at a time
        self._turn: contextlib.AbstractContextManager[object] = (
            contextlib.nullcontext() if self.thread_safe else threading.Lock())
        self._lock = threading.Lock()       # guards _broken and _released
        self._broken: StoreProcessError | None = None
        self._released = False
        #: the tickers standing for the workers the store says it runs: (thread, stop)
        self._tickers: list[tuple[threading.Thread, threading.Event]] = []
        self._tickers_lock = threading.Lock()
        self._workers_lock = threading.Lock()
        self._interval = 0.0
        self._finalizer = weakref.finalize(self, process.kill)

    # --- one request -----------------------------------------------------------------

    def _call(self, op: str, *args: object) -> Any:
        what = f"{op}({', '.join(shown(a) for a in args)})"
        run_id = args[0] if args and op in ("start", "transition", "heartbeat",
                                            "append_event", "get") else "*"
        with self._lock:
            if self._broken is not None:
                raise StoreProcessError(run_id, self._broken.state,
                                        f"{self._broken.rule}; so {what} cannot be asked")
            if self._released:
                raise StoreProcessError(run_id, "released", f"X5: {what} after release()")
        try:
            with self._turn:  # (the clock is read in turn: `now` as the store sees it)
                try:
                    message = {"op": op, "args": [encode(a) for a in args],
                               "now": encode(self._clock())}
                except WireError as error:  # the kit's own arguments: a bug of the kit
                    raise ValueError(f"{what}: {error}") from None
                reply = self._process.request(message, what, run_id)
            try:
                if "error" in reply:
                    raise self._error(reply["error"])
                return RESULTS[op](reply["result"])
            except WireError as error:
                self._process.fail("X5", "protocol", str(error))
                raise self._process.error(f"request #{reply['id']} {what}",
                                          run_id) from None
        except StoreProcessError as error:
            with self._lock:
                self._broken = self._broken or error
            raise

    def _error(self, value: Any) -> Exception:
        if not isinstance(value, dict) or not isinstance(value.get("class"), str) \
                or not isinstance(value.get("rule"), str):
            raise WireError(f"an error must be an object with class and rule, got "
                            f"{shown(value)}")
        cls = ERRORS.get(value["class"])
        if cls is None:
            return ForeignError(f"{value['class']}: {value.get('message', value['rule'])}")
        try:
            run_id = decode(value.get("run_id", "*"))
        except WireError:
            run_id = value.get("run_id")
        return cls(run_id, value.get("state", "n/a"), value["rule"])

    # --- the worker calls and close (the calls on runs: `Forwarding`) ------------------

    # A worker call and the tickers it leaves are one step (`_workers_lock`): two starts
    # at once must not both add a ticker for the one worker the store runs.

    def start_cleanup_worker(self, interval: float) -> bool:
        with self._workers_lock:
            started: bool = self._call("start_cleanup_worker", interval)
            if started:
                self._interval = float(interval)
            self._match_workers(None)
            return started

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        with self._workers_lock:
            self._stop_tickers(timeout)
            stopped: bool = self._call("stop_cleanup_worker", timeout)
            self._match_workers(timeout)
            return stopped

    def cleanup_workers_alive(self) -> int:
        return self._call("cleanup_workers_alive")  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._workers_lock:
            self._stop_tickers(None)
            try:
                self._call("close")
            finally:
                self._match_workers(None)

    # --- the harness's calls -------------------------------------------------------------

    def release(self) -> None:
        """Done with this store: its process goes back to the factory for the next one."""
        self._stop_tickers(None)
        with self._turn, self._lock:  # (a request in flight to a serial store ends first)
            if self._released:
                return
            self._released = True
            if self._broken is None and self._process.failure is None \
                    and self._process.popen.poll() is None:
                self._factory.give_back(self._process)
                self._finalizer.detach()
            else:
                self._process.kill()

    def reopen(self) -> ProcessRunStore:
        """The store's process restarts: `reopen` keeps what a durable store stored, and a
        store in memory starts empty, as a new process would."""
        if self._released and not self._factory.take_back(self._process):
            raise StoreProcessError("*", "released", "X5: reopen() after the process was "
                                    "given to another store")
        store = ProcessRunStore(self._factory, self._process, self._clock)
        self._released = True
        self._finalizer.detach()  # the new proxy owns the process now
        try:
            with store._turn:
                reply = self._process.request({"op": "reopen"}, "reopen()", "*")
            if "error" in reply or reply.get("result") is not None:
                raise StoreProcessError("*", "protocol", f"X5: reopen answered "
                                        f"{shown(reply)}, not null")
        except StoreProcessError as error:
            store._broken = error
        return store

    # --- the worker's stand-ins ----------------------------------------------------------

    def _match_workers(self, timeout: float | None) -> None:
        """As many tickers as the store says it runs workers (the store's word, made
        threads the checkers count)."""
        try:
            wanted = self._call("cleanup_workers_alive")
        except (RunboundError, ForeignError):
            return  # a broken process: nothing ticks; the error is raised on the next call
        if not isinstance(wanted, int) or wanted < 0:
            return
        with self._tickers_lock:
            have = len(self._tickers)
        if wanted < have:
            self._stop_tickers(timeout, keep=wanted)
        for _ in range(wanted - have):
            stop = threading.Event()
            thread = threading.Thread(target=self._tick_loop, args=(self._interval, stop),
                                      name="runbound-wire-ticker", daemon=True)
            with self._tickers_lock:
                self._tickers.append((thread, stop))
            thread.start()

    def _stop_tickers(self, timeout: float | None, keep: int = 0) -> None:
        with self._tickers_lock:
            stopping, self._tickers = self._tickers[keep:], self._tickers[:keep]
        for _, stop in stopping:
            stop.set()
        for thread, _ in stopping:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _tick_loop(self, interval: float, stop: threading.Event) -> None:
        """Sleep `interval` on the checker's clock, send `tick`, until stopped. A failed
        tick leaves the proxy broken (the next call raises), and this ticker ends."""
        interval = interval or 1.0
        while not sleep(self._clock, interval, stop):
            try:
                self._call("tick")
            except (RunboundError, ForeignError) as error:
                with self._lock:
                    if self._broken is None:  # a refusal: the spec's tick refuses nothing
                        why = (f"tick must answer null, it raised {type(error).__name__}: "
                               f"{error}")
                        self._broken = StoreProcessError("*", "protocol", f"X5: {why}")
                        self._process.fail("X5", "protocol", why)
                return
