"""RedisRunStore: for several processes or machines sharing one store.

Rules of this module:
- Every operation is one call of one Lua script (`redis.lua`), so it is atomic on the
  server; the script journals its changes, so a refused call, lazy sweep included,
  changes nothing (I10).
- Retention lives in sorted sets (terminal runs by `terminated_at`, active runs by
  `updated_at`, each tie-broken by start order; listing by `seq`), so an eviction is
  O(log n) and a page walks only its own entries.
- Keys live under `prefix`, which carries a hash tag (`runbound:{runs}:`), so all of a
  store's keys hash to one slot and the store runs on Redis Cluster. (The script derives
  keys from the prefix rather than declaring each in KEYS; all are in the declared key's
  slot.)
- Time: the store's only clock is the factory's `clock`, never Redis `TIME`, so the
  checks' virtual clock governs it. Times travel as Python's exact decimal strings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from model import errors, spec
from model.clock import Clock
from model.lifecycle import Status, as_status
from model.policy import Policy
from model.records import Page, Run, SweepResult
from reference.worker import CleanupWorker, WorkerMixin

LUA = (Path(__file__).parent / "redis.lua").read_text()
ERRORS: dict[str, type[errors.RunboundError]] = {
    name: getattr(errors, name) for name in
    ("UnknownRun", "NotActive", "RunAlreadyActive", "AdmissionRefused", "IllegalTransition")}


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


def _run(row: list[Any]) -> Run:
    run_id, seq, status, created, updated, terminated, events, dropped = row
    return Run(run_id, Status(status), float(created), float(updated),
               None if terminated == "" else float(terminated), tuple(json.loads(events)),
               int(dropped), int(seq))


class RedisRunStore(WorkerMixin):
    thread_safe = True

    def __init__(self, policy: Policy, clock: Clock = time.monotonic, *,
                 url: str = "redis://127.0.0.1:6379/0", prefix: str = "runbound:{runs}:",
                 client: redis.Redis | None = None) -> None:
        if "{" not in prefix or "}" not in prefix:
            raise errors.InvalidArgument(prefix, "n/a", "K1: the prefix needs a {hash tag}")
        self.policy, self.prefix, self.url = policy, prefix, url
        self._clock = clock
        self._own_client = client is None
        self._client = client or redis.Redis.from_url(url, decode_responses=True)
        self._script = self._client.register_script(LUA)
        self._closed = False
        self._worker = CleanupWorker(self.prune, self._clock)

    def _call(self, op: str, *args: str) -> Any:
        if self._closed:
            raise errors.StoreClosed("*", "closed", "L1: the store is closed")
        p = self.policy
        result = self._script(keys=[self.prefix], args=[
            op, repr(float(self._clock())), _opt(p.ttl), _opt(p.max_terminal),
            _opt(p.max_active), _opt(p.max_events_per_run), _opt(p.stale_after),
            "1" if p.lazy else "0", *args])
        if isinstance(result, list) and result and result[0] == "ERR":
            _, kind, run_id, state, rule = result
            raise ERRORS[kind](run_id, state, rule)
        return result

    # --- the operations ------------------------------------------------------------

    def start(self, run_id: str) -> Run:
        return _run(self._call("start", spec.check_run_id(run_id)))

    def transition(self, run_id: str, status: Status | str) -> Run:
        rid = spec.check_run_id(run_id)
        return _run(self._call("transition", rid, as_status(rid, status).value))

    def heartbeat(self, run_id: str) -> Run:
        return _run(self._call("heartbeat", spec.check_run_id(run_id)))

    def append_event(self, run_id: str, payload: str) -> int:
        rid = spec.check_run_id(run_id)
        return int(self._call("append", rid, spec.check_payload(rid, payload))[0])

    def get(self, run_id: str) -> Run:
        return _run(self._call("get", spec.check_run_id(run_id)))

    def list_runs(self, limit: int, status: Status | str | None = None,
                  cursor: str | None = None) -> Page:
        count = spec.check_limit(limit)
        wanted = "" if status is None else as_status("*", status).value
        below = spec.parse_cursor(cursor)
        rows, next_cursor = self._call("list", str(count), wanted,
                                       "" if below is None else str(below))
        return Page(tuple(_run(r) for r in rows), next_cursor or None)

    def prune(self) -> SweepResult:
        reaped, expired, evicted = self._call("prune")
        return SweepResult(tuple(sorted(reaped)), tuple(sorted(expired)),
                           tuple(sorted(evicted)))

    def __len__(self) -> int:
        return int(self._call("len"))

    def snapshot(self) -> tuple[Run, ...]:
        return tuple(_run(r) for r in self._call("snapshot"))

    # --- the worker and the store's life -------------------------------------------

    def start_cleanup_worker(self, interval: float) -> bool:
        interval = spec.check_interval(interval)
        if self._closed:
            raise errors.StoreClosed("*", "closed", "L1: the store is closed")
        return self._worker.start(interval)

    def close(self) -> None:
        self._worker.stop(timeout=10.0)
        if not self._closed and self._own_client:
            self._client.close()
        self._closed = True

    def reopen(self) -> RedisRunStore:
        """The process restarts: a new store on the same server and prefix."""
        self.close()
        return RedisRunStore(self.policy, self._clock, url=self.url, prefix=self.prefix)

    def __enter__(self) -> RedisRunStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
