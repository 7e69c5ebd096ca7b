"""One vocabulary of calls, shared by every checker.

A program is a list of steps (`Step`, plain JSON data); each step names an operation of
`runbound.model.spec` and its arguments. This module holds the one call table
(`MODEL_CALLS`: an operation on the model), how a call is made on a store (`invoke`), how
a store's answer is compared with the model's (`same_result`), and the codec that writes
arguments and policies as JSON and shows them to a person (`to_json`, `from_json`,
`policy_to_json`, `shown`, `step_text`). The stateful check, the explorer, the
linearizability check, replay and the simulator all speak it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from runbound.model import errors, spec
from runbound.model.errors import RunboundError, StoreProcessError
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.model.records import Page, Run, SweepResult

#: one step of a program: {"op": ..., "args": [...], ...}, JSON as it is written down
Step = dict[str, Any]


ModelCall = Callable[[spec.ModelState, float, tuple[Any, ...]], tuple[spec.ModelState, Any]]


def _model_call(op: str) -> ModelCall:
    return lambda m, now, a: spec.call(m, op, *a, now=now)


#: op -> the model's call, raising a refusal (`spec.apply` returns it instead)
MODEL_CALLS: dict[str, ModelCall] = {op: _model_call(op) for op in spec.OPERATIONS}
#: operations whose results are runs a reader can see (checked by I5)
READS = frozenset({"get", "list_runs"})


def invoke(store: Any, op: str, args: tuple[Any, ...]) -> object:
    """Make `op(*args)` on a store; its result, or the exception it raised."""
    try:
        if op == "len":
            return len(store)
        return getattr(store, op)(*args)
    except StoreProcessError:  # the boundary failed: not a result (`runbound.model.check.process`)
        raise
    except Exception as error:  # any exception is a result to compare
        return error


def policy_to_json(policy: Policy) -> dict[str, Any]:
    return {f: (v.value if isinstance(v, SweepMode) else v)
            for f, v in ((f, getattr(policy, f)) for f in Policy.__dataclass_fields__)}


def to_json(value: object) -> object:
    """Arguments as JSON: a status by its name, bytes tagged, an int past 64 bits in hex
    (Python will not write it in decimal past 4,300 digits), the rest as they are."""
    if isinstance(value, Status):
        return value.value
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 63:
        return {"int": hex(value)}
    if isinstance(value, list | tuple):
        return {"list": [to_json(v) for v in value]}
    return value


def from_json(value: object) -> object:
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return str(value["bytes"]).encode("latin-1")
    if isinstance(value, dict) and set(value) == {"int"}:
        return int(str(value["int"]), 16)
    if isinstance(value, dict) and set(value) == {"list"}:
        return [from_json(v) for v in value["list"]]
    return value


def same_result(expected: object, actual: object) -> bool:
    """Does the store's answer match the model's? Errors by class, pages by their runs and
    whether a next page exists (cursors are each store's own), values by equality."""
    if isinstance(expected, RunboundError):
        return type(actual) is type(expected)
    if isinstance(expected, Page):
        return (isinstance(actual, Page) and actual.runs == expected.runs
                and (actual.next_cursor is None) == (expected.next_cursor is None))
    return type(actual) is type(expected) and actual == expected


def shown(value: object) -> str:
    """A result or argument for a report: an error by its class and message, a status by
    its name, any other value short and safe (`spec.shown`)."""
    if isinstance(value, BaseException):
        return f"{type(value).__name__}({value})"
    if isinstance(value, Status):
        return repr(value.value)
    return spec.shown(value)


def call_text(op: str, args: Iterable[object]) -> str:
    """A call as a person reads it: `op('a', 'running')`."""
    return f"{op}({', '.join(shown(a) for a in args)})"


def step_text(step: Step) -> str:
    """One step of a program as a line a person reads."""
    op, args = step["op"], [from_json(a) for a in step.get("args", [])]
    if op == "setup":
        extra = "" if step.get("observe", True) else "  # observed only at the end"
        fields = ", ".join(f"{k}={v!r}" for k, v in step["policy"].items()
                           if v is not None and k != "sweep")
        sweep = step["policy"].get("sweep", "lazy")
        fields = ", ".join(filter(None, [fields, "" if sweep == "lazy" else
                                         f"sweep={sweep!r}"]))
        return f"store = factory(Policy({fields}), VirtualClock()){extra}"
    if op == "advance_clock":
        return f"clock.advance({args[0]!r})"
    if op == "clock_fault":
        return f"clock reads {args[0]!r} from here"
    if op == "restart":
        return "restart()"
    return call_text(op, args)


# --- results as JSON: the call log (specs/log.md) and the wire -----------------------

def run_to_json(run: Run) -> dict[str, Any]:
    return {"run_id": run.run_id, "status": run.status.value, "created_at": run.created_at,
            "updated_at": run.updated_at, "terminated_at": run.terminated_at,
            "events": list(run.events), "dropped_events": run.dropped_events}


def result_to_json(value: object) -> object:
    """A result: a run, a page, a sweep, the runs of a snapshot, or a plain value."""
    if isinstance(value, Run):
        return {"run": run_to_json(value)}
    if isinstance(value, Page):
        return {"page": {"runs": [run_to_json(r) for r in value.runs],
                         "next_cursor": value.next_cursor}}
    if isinstance(value, SweepResult):
        return {"sweep": {"reaped": list(value.reaped), "expired": list(value.expired),
                          "evicted": list(value.evicted)}}
    if isinstance(value, tuple):
        return {"runs": [run_to_json(r) for r in value]}
    return value


def run_from_json(data: dict[str, Any]) -> Run:
    return Run(run_id=data["run_id"], status=Status(data["status"]),
               created_at=data["created_at"], updated_at=data["updated_at"],
               terminated_at=data["terminated_at"], events=tuple(data["events"]),
               dropped_events=data["dropped_events"])


def result_from_json(value: object) -> object:
    """The inverse of `result_to_json` (KeyError, ValueError or TypeError on a value not
    of the format: the checker names the line)."""
    if not isinstance(value, dict):
        return value
    (kind, data), = value.items()
    if kind == "run":
        return run_from_json(data)
    if kind == "page":
        return Page(tuple(run_from_json(r) for r in data["runs"]), data["next_cursor"])
    if kind == "sweep":
        return SweepResult(tuple(data["reaped"]), tuple(data["expired"]),
                           tuple(data["evicted"]))
    if kind == "runs":
        return tuple(run_from_json(r) for r in data)
    raise ValueError(f"no result of kind {kind!r}")


#: the error classes a log may name, by name
ERRORS: dict[str, type[RunboundError]] = {
    cls.__name__: cls for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, RunboundError)}


def error_from_json(data: dict[str, Any]) -> RunboundError:
    """The error a line names, as an instance of its class (KeyError if no such class)."""
    cls = ERRORS[data["class"]]
    return cls("*", "n/a", str(data.get("message", "")))
