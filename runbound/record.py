"""Recording the calls a live store serves: `record(store, path)` (format: specs/log.md).

The recording wraps any store of the `RunStore` interface and appends one JSON line per
call, from whatever thread made it: the thread, the operation, its arguments, the result
or the error (class and message), the invocation and response times (monotonic ns, and
wall time), and the store's own clock reading for the call (`now`). That reading is what
lets `runbound check-log` replay TTLs and leases exactly: it is taken by wrapping the
store's clock (`RecordedClock`), one reading per call (rule C1), in the calling thread.

Each line is written and flushed when its call returns, under one lock: the log survives
a crash up to the last call that returned, and the recording holds no more than one line
in memory. The encoding of values (`to_json`, `result_to_json`, `result_from_json`) lives
here, with `runbound.model.calls`'s codec of results, shared with the checker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from runbound.model import errors
from runbound.model.calls import policy_to_json, result_to_json
from runbound.model.check.log import FORMAT
from runbound.model.clock import Clock
from runbound.model.errors import RunboundError
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.model.protocol import Forwarding, RunStore


class RecordedClock:
    """A clock that remembers, per thread, the first reading a store made during the call
    being recorded: the `now` of that call (C1 allows one reading per call). Anything else
    the store asks of its clock (a `VirtualClock`'s `sleep`, for its worker) is the
    wrapped clock's."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._local = threading.local()  # per thread: the reading of the call under way

    def __call__(self) -> float:
        reading = self.clock()
        if getattr(self._local, "open", False) and getattr(self._local, "now", None) is None:
            self._local.now = reading
        return reading

    def __getattr__(self, name: str) -> Any:  # `sleep` exactly when the wrapped clock has one
        return getattr(self.clock, name)

    def begin(self) -> None:
        self._local.open, self._local.now = True, None

    def end(self) -> float | None:
        reading: float | None = self._local.now
        self._local.open, self._local.now = False, None
        return reading


def recorded(factory: Callable[[Policy, Clock], RunStore]
             ) -> Callable[[Policy, Clock], tuple[RunStore, RecordedClock]]:
    """`factory`, building its store on a `RecordedClock` around the clock it is given."""
    def build(policy: Policy, clock: Clock) -> tuple[RunStore, RecordedClock]:
        wrapped = RecordedClock(clock)
        return factory(policy, wrapped), wrapped
    return build


class Recording(Forwarding):
    """The store, every call of which is appended to the log (see the module docstring).
    A context manager: leaving it closes the log, not the store."""

    def __init__(self, store: RunStore, path: str | Path, *, clock: RecordedClock,
                 policy: Policy | None = None, name: str | None = None) -> None:
        policy = policy if policy is not None else getattr(store, "policy", None)
        if not isinstance(policy, Policy):
            raise errors.InvalidArgument("*", "n/a", "LOG3: record() needs the store's "
                                         "policy (pass policy=) for the log's header")
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()  # guards _file and _threads: one line at a time
        self._threads: dict[int, int] = {}  # thread ident -> its number in the log
        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        header = {"runbound_log": FORMAT, "store": name or type(store).__name__,
                  "policy": policy_to_json(policy), "clock_readings": True,
                  "wall_start": time.time()}
        self._file.write(json.dumps(header) + "\n")
        self._file.flush()

    def _call(self, op: str, *args: Any, extra: tuple[Any, ...] = ()) -> Any:
        """Make the call (with `extra` arguments the model does not take, such as a
        stop's timeout, passed on but not logged) and append its line."""
        ident = threading.get_ident()
        if ident not in self._threads:
            self._announce(ident)
        self.clock.begin()
        wall_inv, inv = time.time(), time.monotonic_ns()
        try:
            result: Any = getattr(self.store, "__len__" if op == "len" else op)(*args, *extra)
            failed = None
        except RunboundError as error:  # a refusal is a result; anything else is a crash
            result, failed = None, error
        finally:
            ret, wall_ret = time.monotonic_ns(), time.time()
            now = self.clock.end()
        line: dict[str, Any] = {"op": op, "args": [to_json(a) for a in args], "inv": inv,
                                "ret": ret, "wall_inv": wall_inv, "wall_ret": wall_ret}
        if now is not None:
            line["now"] = now
        if failed is None:
            line["ok"] = result_to_json(result)
        else:
            line["err"] = {"class": type(failed).__name__, "message": str(failed)}
        with self._lock:
            line["t"] = self._threads[ident]
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        if failed is not None:
            raise failed
        return result

    def _announce(self, ident: int) -> None:
        """A thread line, written before the thread's first call is invoked: a reader then
        knows the thread exists before any call that returned after that invocation
        (specs/log.md: what lets the checker stream)."""
        with self._lock:
            number = self._threads[ident] = len(self._threads)
            line = {"thread": number, "at": time.monotonic_ns()}
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()

    # the worker calls and close, each recorded too (the calls on runs: `Forwarding`)
    def start_cleanup_worker(self, interval: float) -> bool:
        return self._call("start_cleanup_worker", interval)  # type: ignore[no-any-return]

    def stop_cleanup_worker(self, timeout: float | None = None) -> bool:
        return self._call("stop_cleanup_worker", extra=(timeout,))  # type: ignore[no-any-return]

    def cleanup_workers_alive(self) -> int:
        return self._call("cleanup_workers_alive")  # type: ignore[no-any-return]

    def close(self) -> None:
        self._call("close")

    def finish(self) -> None:
        """Close the log (the store stays as it is). Safe twice."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.finish()


def record(store: RunStore, path: str | Path, *, clock: RecordedClock,
           policy: Policy | None = None, name: str | None = None) -> Recording:
    """Record every call made through the returned object to the log at `path`. `clock`
    is the `RecordedClock` the store was built on (see `recorded`): without the store's
    own readings, a log's TTLs and leases could not be checked."""
    return Recording(store, path, clock=clock, policy=policy, name=name)


# --- values in the log -----------------------------------------------------------------

def to_json(value: object) -> object:
    """An argument: a status by its name; JSON's own values as they are; anything else
    (bytes, an object) as {"repr": ...}, which no operation accepts, as the store did not."""
    if isinstance(value, Status):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return {"repr": repr(value)}
