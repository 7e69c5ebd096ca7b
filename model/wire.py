"""The wire protocol's values (`specs/wire.md`, version 1), both ways: what the kit's
proxy (`runbound.model.check.process`) and the Python adapter (`runbound.serve`) put on a
line and read back. Written by hand: the mapping is the protocol itself (which Python value becomes
which JSON), and no library knows it.

Rules of this module:
- Plain JSON carries what it can: str, int, finite float, bool, null, arrays.
- What JSON cannot carry travels as an object `{"type": ..., ...}`. No rule of the spec
  accepts an object, so a store in any language refuses it with the argument's rule,
  in its own order of checks, without knowing the tags: a str with a lone surrogate (it
  has no UTF-8 form), bytes, a NaN or infinite float, an int past 64 bits.
- Reading is strict: a NaN literal, a lone surrogate in a string, a missing field or one
  of the wrong type is a `WireError`, which the proxy reports as a protocol error.
"""

from __future__ import annotations

import json
import math
from typing import Any

from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.records import Page, Run, SweepResult

#: the protocol version this kit speaks
VERSION = 1
#: the fields of `hello`'s capabilities (runbound.model.check.capabilities.Capabilities)
CAPABILITY_FIELDS = ("worker", "events", "heartbeat", "durable", "thread_safe",
                     "clock_granularity")


class WireError(ValueError):
    """A line or a value that is not what the protocol says."""


def _is_text(value: str) -> bool:
    return not any("\ud800" <= ch <= "\udfff" for ch in value)


def encode(value: object) -> Any:
    """An argument, or a clock reading, as JSON."""
    if isinstance(value, Status):
        return value.value
    if isinstance(value, str):
        return value if _is_text(value) else {"type": "str",
                                              "code_points": [ord(c) for c in value]}
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -2**64 < value < 2**64 else {"type": "int", "hex": hex(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"type": "float", "value": repr(value)}
    if isinstance(value, bytes):
        return {"type": "bytes", "hex": value.hex()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    raise WireError(f"no wire form for a {type(value).__name__}")


def decode(value: Any) -> object:
    """`encode`'s inverse: the Python value a JSON argument stands for."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    try:
        if kind == "str":
            return "".join(chr(c) for c in value["code_points"])
        if kind == "int":
            return int(value["hex"], 16)
        if kind == "float":
            return float(value["value"])
        if kind == "bytes":
            return bytes.fromhex(value["hex"])
    except (KeyError, TypeError, ValueError) as error:
        raise WireError(f"a malformed {kind} value: {value!r}") from error
    raise WireError(f"no such wire value: {value!r}")


def dumps(message: dict[str, Any]) -> str:
    """One line, ASCII (every non-ASCII character escaped): no encoding to agree on."""
    return json.dumps(message, allow_nan=False, separators=(",", ":"))


def _no_constant(name: str) -> Any:
    raise WireError(f"{name} is not JSON")


def loads(line: str) -> dict[str, Any]:
    """One line read, strictly: a JSON object with no NaN literal and no lone surrogate."""
    try:
        message = json.loads(line, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise WireError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise WireError(f"not a JSON object but a {type(message).__name__}")
    _check_text(message)
    return message


def _check_text(value: Any) -> None:
    if isinstance(value, str) and not _is_text(value):
        raise WireError(f"a string with a lone surrogate ({value!r}) is not text")
    if isinstance(value, list):
        for v in value:
            _check_text(v)
    if isinstance(value, dict):
        for k, v in value.items():
            _check_text(k)
            _check_text(v)


# --- the values of results --------------------------------------------------------------

def run_to_json(run: Run) -> dict[str, Any]:
    return {"run_id": run.run_id, "status": run.status.value, "created_at": run.created_at,
            "updated_at": run.updated_at, "terminated_at": run.terminated_at,
            "events": list(run.events), "dropped_events": run.dropped_events,
            "seq": run.seq}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{what} must be a number, got {value!r}")
    return value


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{what} must be an integer, got {value!r}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise WireError(f"{what} must be a string, got {value!r}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(f"{what} must be an array, got {value!r}")
    return value


def _fields(value: Any, what: str, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != set(names):
        raise WireError(f"{what} must be an object with exactly {', '.join(names)}, got "
                        f"{value!r}")
    return value


_RUN_FIELDS = ("run_id", "status", "created_at", "updated_at", "terminated_at", "events",
               "dropped_events", "seq")


def run_from_json(value: Any) -> Run:
    v = _fields(value, "a run", _RUN_FIELDS)
    try:
        status = Status(v["status"])
    except ValueError:
        raise WireError(f"no such status {v['status']!r}") from None
    ended = v["terminated_at"]
    return Run(run_id=_str(v["run_id"], "run_id"), status=status,
               created_at=_number(v["created_at"], "created_at"),
               updated_at=_number(v["updated_at"], "updated_at"),
               terminated_at=None if ended is None else _number(ended, "terminated_at"),
               events=tuple(_str(e, "an event") for e in _list(v["events"], "events")),
               dropped_events=_int(v["dropped_events"], "dropped_events"),
               seq=_int(v["seq"], "seq"))


def page_to_json(page: Page) -> dict[str, Any]:
    return {"runs": [run_to_json(r) for r in page.runs], "next_cursor": page.next_cursor}


def page_from_json(value: Any) -> Page:
    v = _fields(value, "a page", ("runs", "next_cursor"))
    cursor = v["next_cursor"]
    return Page(tuple(run_from_json(r) for r in _list(v["runs"], "runs")),
                None if cursor is None else _str(cursor, "next_cursor"))


def sweep_to_json(result: SweepResult) -> dict[str, Any]:
    return {"reaped": list(result.reaped), "expired": list(result.expired),
            "evicted": list(result.evicted)}


def sweep_from_json(value: Any) -> SweepResult:
    v = _fields(value, "a sweep result", ("reaped", "expired", "evicted"))
    return SweepResult(*(tuple(_str(i, "a run id") for i in _list(v[k], k))
                         for k in ("reaped", "expired", "evicted")))


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise WireError(f"{what} must be true or false, got {value!r}")
    return value


def _null(value: Any, what: str) -> None:
    if value is not None:
        raise WireError(f"{what} must be null, got {value!r}")


#: operation -> how its result is read (the spec's operations, runbound.model.spec.OPERATIONS)
RESULTS: dict[str, Any] = {
    "start": run_from_json, "transition": run_from_json, "heartbeat": run_from_json,
    "get": run_from_json, "append_event": lambda v: _int(v, "an event number"),
    "list_runs": page_from_json, "prune": sweep_from_json,
    "len": lambda v: _int(v, "len"),
    "snapshot": lambda v: tuple(run_from_json(r) for r in _list(v, "a snapshot")),
    "start_cleanup_worker": lambda v: _bool(v, "start_cleanup_worker"),
    "stop_cleanup_worker": lambda v: _bool(v, "stop_cleanup_worker"),
    "cleanup_workers_alive": lambda v: _int(v, "cleanup_workers_alive"),
    "close": lambda v: _null(v, "close"),
    "tick": lambda v: _null(v, "tick"),
}


def result_to_json(value: object) -> Any:
    """Any operation's result as JSON (the serving side)."""
    if isinstance(value, Run):
        return run_to_json(value)
    if isinstance(value, Page):
        return page_to_json(value)
    if isinstance(value, SweepResult):
        return sweep_to_json(value)
    if isinstance(value, tuple | list):
        return [result_to_json(v) for v in value]
    return value


def policy_to_json(policy: Policy) -> dict[str, Any]:
    return {f: (v.value if isinstance(v, SweepMode) else v)
            for f, v in ((f, getattr(policy, f)) for f in Policy.__dataclass_fields__)}


def policy_from_json(value: Any) -> Policy:
    v = _fields(value, "a policy", tuple(Policy.__dataclass_fields__))
    return Policy(**v)
