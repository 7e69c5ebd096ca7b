"""The one clock seam. Stores take `clock: Callable[[], float]` (default
`time.monotonic`) and read it once per call; the checkers pass a `VirtualClock`, which
moves only when told, so every time-driven rule is reproducible."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

Clock = Callable[[], float]


class VirtualClock:
    """A clock that reads `now` until `advance` moves it. Thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"VirtualClock({self._now!r})"
