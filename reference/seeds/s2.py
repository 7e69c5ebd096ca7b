"""S2: `ChatRunRegistry` of the Jarvis harness server (`crates/harness-server/src/
chat_runs.rs`, after PR #61), replicated in Python.

Copied as `seed-systems.md` describes it: statuses `running`, `waiting_approval`,
`waiting_hitl` (active) and `completed`, `failed`, `cancelled` (terminal), with no
transition table; `try_start` sweeps, refuses an active id, replaces a terminal one;
`push_frame` and `update` upsert (an unknown id creates a record), take `seq =
next_seq++`, set `updated_at`, keep the newest `MAX_EVENTS_PER_RUN` frames, and on a
transition into a terminal status call `mark_terminal` (stamp `terminated_at` only if
unset, then sweep); the sweep drops terminal runs with `now - terminated_at >= TTL`
(saturating: a clock that goes backwards evicts nothing), then the oldest terminated
beyond the cap; `list` sorts by `updated_at` and never sweeps. Limits default to the
originals (300,000 ms, 256, 1000); the check passes small ones.

Choices the original does not make, or that Python forces:
- one `threading.Lock` stands for the map's `RwLock`; abort handles, broadcast channels
  and lock poisoning have no effect on what is stored, so they are left out;
- time is milliseconds from an injected `clock` in seconds (default `time.time`),
  floored at 0 like the original's pre-epoch clock;
- an upserted record starts `running` with `started_at = now` (the Rust `Default` of the
  state); `get(id)` reads one record as `list` shows it; ties in `list` keep insertion
  order where the original's hash map order is arbitrary;
- the later 8 MiB / 1 MiB frame limits are left out: the replica is PR #61's version.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

ACTIVE = frozenset({"running", "waiting_approval", "waiting_hitl"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
TERMINAL_RETENTION_MS = 300_000
MAX_RETAINED_TERMINAL = 256
MAX_EVENTS_PER_RUN = 1000


@dataclass(frozen=True)
class Frame:
    kind: str                 # "delta", "tool_start", "done", "error", "interrupted", ...
    payload: str | None = None
    status: str | None = None  # the status this frame implies, if any


DONE = Frame("done", status="completed")


@dataclass(frozen=True)
class ChatRunInfo:
    conversation_id: str
    status: str
    started_at: int
    updated_at: int
    latest_seq: int = 0
    current_tool: str | None = None
    last_error: str | None = None


@dataclass
class _RunState:
    info: ChatRunInfo
    events: deque[tuple[int, Frame]] = field(default_factory=deque)
    next_seq: int = 1
    terminated_at: int | None = None


class ChatRunRegistry:
    def __init__(self, *, terminal_retention_ms: int = TERMINAL_RETENTION_MS,
                 max_retained_terminal: int = MAX_RETAINED_TERMINAL,
                 max_events_per_run: int = MAX_EVENTS_PER_RUN,
                 clock: Callable[[], float] = time.time) -> None:
        self.terminal_retention_ms = terminal_retention_ms
        self.max_retained_terminal = max_retained_terminal
        self.max_events_per_run = max_events_per_run
        self._clock = clock
        self._lock = threading.Lock()
        self._inner: dict[str, _RunState] = {}

    def _now_ms(self) -> int:
        return max(0, int(self._clock() * 1000))

    def try_start(self, conversation_id: str) -> bool:
        with self._lock:
            now = self._now_ms()
            self._prune_terminal_locked(now)
            existing = self._inner.get(conversation_id)
            if existing is not None and existing.info.status in ACTIVE:
                return False  # "turn already in progress"
            self._inner[conversation_id] = _RunState(
                ChatRunInfo(conversation_id, "running", started_at=now, updated_at=now))
            return True

    def push_frame(self, conversation_id: str, frame: Frame) -> int:
        with self._lock:
            now = self._now_ms()
            state = self._upsert(conversation_id, now)
            seq = state.next_seq
            state.next_seq += 1
            state.info = replace(state.info, updated_at=now, latest_seq=seq,
                                 last_error=frame.payload if frame.kind == "error"
                                 else state.info.last_error)
            state.events.append((seq, frame))
            while len(state.events) > self.max_events_per_run:
                state.events.popleft()
            if frame.status is not None:
                self._set_status(state, frame.status, now)
            return seq

    def update(self, conversation_id: str, status: str) -> None:
        with self._lock:
            now = self._now_ms()
            state = self._upsert(conversation_id, now)
            state.info = replace(state.info, updated_at=now)
            self._set_status(state, status, now)

    def running(self, conversation_id: str) -> None:
        self.update(conversation_id, "running")

    def waiting_hitl(self, conversation_id: str) -> None:
        self.update(conversation_id, "waiting_hitl")

    def cancelled(self, conversation_id: str) -> None:
        self.update(conversation_id, "cancelled")

    def events(self, conversation_id: str, after: int = 0) -> list[tuple[int, Frame]]:
        with self._lock:
            state = self._inner.get(conversation_id)
            return [] if state is None else [e for e in state.events if e[0] > after]

    def get(self, conversation_id: str) -> ChatRunInfo | None:
        with self._lock:
            state = self._inner.get(conversation_id)
            return None if state is None else state.info

    def list(self, active_only: bool = False) -> list[ChatRunInfo]:
        with self._lock:
            infos = [s.info for s in self._inner.values()
                     if not active_only or s.info.status in ACTIVE]
        return sorted(infos, key=lambda i: i.updated_at, reverse=True)

    def force_prune(self, now_ms: int) -> None:
        """The PR's test seam: sweep with an injected clock."""
        with self._lock:
            self._prune_terminal_locked(now_ms)

    # --- internals ------------------------------------------------------------------

    def _upsert(self, conversation_id: str, now: int) -> _RunState:
        state = self._inner.get(conversation_id)
        if state is None:
            state = _RunState(ChatRunInfo(conversation_id, "running", now, now))
            self._inner[conversation_id] = state
        return state

    def _set_status(self, state: _RunState, status: str, now: int) -> None:
        # No table: any status follows any other, and leaving a terminal status does not
        # clear terminated_at.
        state.info = replace(state.info, status=status)
        if status in TERMINAL:
            self._mark_terminal(state, now)

    def _mark_terminal(self, state: _RunState, now: int) -> None:
        if state.terminated_at is None:
            state.terminated_at = now
        self._prune_terminal_locked(now)

    def _prune_terminal_locked(self, now: int) -> None:
        for cid, state in list(self._inner.items()):
            t = state.terminated_at
            if t is not None and max(0, now - t) >= self.terminal_retention_ms:
                del self._inner[cid]
        terminal = [(s.terminated_at, cid) for cid, s in self._inner.items()
                    if s.terminated_at is not None]
        excess = len(terminal) - self.max_retained_terminal
        if excess > 0:
            for _, cid in sorted(terminal, key=lambda e: e[0] or 0)[:excess]:
                del self._inner[cid]
