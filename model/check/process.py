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
- Requests are serialised under one lock: stdin/stdout is one connection. I19 is then
  about this lock, not the store, so the capabilities leave it out (`WireCapabilities`).
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
        out["I19"] = ("is one stdin/stdout connection: the proxy serialises its requests, so "
                      "concurrent calls never reach the store at once (wire v1)")
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
        self.buffer = b""
        self.next_id = 0
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
        """Send one request and return its reply (the whole object)."""
        self.next_id += 1
        ident = self.next_id
        text = f"request #{ident} {what}"

        def fail(code: str, state: str, why: str) -> StoreProcessError:
            self.kill_quietly()
            return StoreProcessError(run_id, state, f"{code}: {why} (the store "
                                     f"{shlex.join(self.command)} at {text})"
                                     f"{self.stderr_tail()}")

        try:
            self.stdin.write((dumps({"id": ident, **message}) + "\n").encode("ascii"))
            self.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise fail("X1", "exited", f"the process is gone (exit code "
                       f"{self.popen.poll()}) before it could read the request") from None
        try:
            line = self._line(time.monotonic() + self.timeout)
        except TimeoutError:
            raise fail("X2", "hung", f"no reply within {self.timeout:g} s") from None
        except WireError as error:
            raise fail("X3", "garbled", str(error)) from None
        if line is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(self.timeout)
            raise fail("X1", "exited", f"the process exited (exit code "
                       f"{self.popen.poll()}) without replying") from None
        try:
            reply = loads(line.decode("utf-8"))
        except (UnicodeDecodeError, WireError) as error:
            raise fail("X3", "garbled", f"a line that is not a reply: "
                       f"{shown(line.decode('utf-8', 'replace'))}: {error}") from None
        if reply.get("id") != ident:
            raise fail("X4", "out of step", f"a reply to request {shown(reply.get('id'))} "
                       f"where #{ident} was asked: {shown(line.decode())}")
        if ("result" in reply) == ("error" in reply) or set(reply) - {"id", "result",
                                                                        "error"}:
            raise fail("X5", "protocol", f"a reply must have exactly one of result and "
                       f"error: {shown(line.decode())}")
        return reply

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
            if len(self._idle) < _IDLE and process.popen.poll() is None:
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
        self.thread_safe = False  # one connection; see WireCapabilities
        self._lock = threading.Lock()       # one request at a time on the pipe
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
                message = {"op": op, "args": [encode(a) for a in args],
                           "now": encode(self._clock())}
            except WireError as error:  # the kit's own arguments: a bug, not the store's
                raise ValueError(f"{what}: {error}") from None
            try:
                reply = self._process.request(message, what, run_id)
                if "error" in reply:
                    raise self._error(reply["error"])
                return RESULTS[op](reply["result"])
            except WireError as error:
                self._process.kill_quietly()
                self._broken = StoreProcessError(
                    run_id, "protocol", f"X5: {error} (the store "
                    f"{shlex.join(self._process.command)} at request "
                    f"#{self._process.next_id} {what})")
                raise self._broken from None
            except StoreProcessError as error:
                self._broken = error
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
        with self._lock:
            if self._released:
                return
            self._released = True
            if self._broken is None and self._process.popen.poll() is None:
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
            with store._lock:
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
                        self._broken = StoreProcessError(
                            "*", "protocol", f"X5: tick must answer null, it raised "
                            f"{type(error).__name__}: {error}")
                        self._process.kill_quietly()
                return
