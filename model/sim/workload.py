"""What the simulator runs: when runs arrive, how long they take, how they end, and who
comes back to read them (`Workload`), and the draw of all of it at once (`draw`).

Every random number of a workload is drawn up front, in bulk, from one numpy generator
seeded with `Workload.seed`: the same seed gives the same workload on every run and
every engine, and under every policy -- what a run would do is drawn whether or not a
policy lets it (a refused start still has a duration), so two policies compare on the
very same runs. Drawing per run in a Python loop cost more than the simulation itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from runbound.model.errors import InvalidArgument
from runbound.model.lifecycle import Status

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]


def _positive(owner: object, name: str, value: float, zero: bool = False) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value)
            and (value >= 0 if zero else value > 0)):
        raise InvalidArgument("*", "n/a", f"WL1: {type(owner).__name__}.{name} must be a "
                              f"finite number {'>= 0' if zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class Poisson:
    """Arrivals at a constant mean rate (runs per second)."""

    rate: float

    def __post_init__(self) -> None:
        _positive(self, "rate", self.rate)

    def times(self, rng: np.random.Generator, n: int) -> Floats:
        return np.cumsum(rng.exponential(1.0 / self.rate, n))


@dataclass(frozen=True)
class DailyCycle:
    """A Poisson rate that swings by `amplitude` around `rate` over `period` seconds
    (thinning: draw at the peak rate, keep each arrival with rate(t) / peak)."""

    rate: float
    amplitude: float = 0.8
    period: float = 86_400.0

    def __post_init__(self) -> None:
        _positive(self, "rate", self.rate)
        _positive(self, "amplitude", self.amplitude, zero=True)
        _positive(self, "period", self.period)

    def times(self, rng: np.random.Generator, n: int) -> Floats:
        peak, start, kept = self.rate * (1 + self.amplitude), 0.0, []
        made = 0
        while made < n:  # chunks sized to the mean acceptance; the last one is cut
            size = int((n - made) * (1 + self.amplitude) * 1.1) + 64
            t = start + np.cumsum(rng.exponential(1.0 / peak, size))
            level = self.rate * (1 + self.amplitude * np.sin(2 * np.pi * t / self.period))
            chosen = t[rng.random(size) * peak < level]
            kept.append(chosen[:n - made])
            made += len(kept[-1])
            start = float(t[-1])
        return np.concatenate(kept) if kept else np.zeros(0)


@dataclass(frozen=True)
class Bursts:
    """`rate` most of the time, `burst_rate` for `length` seconds every `every` seconds."""

    rate: float
    burst_rate: float
    every: float
    length: float

    def __post_init__(self) -> None:
        _positive(self, "rate", self.rate, zero=True)
        _positive(self, "burst_rate", self.burst_rate)
        _positive(self, "every", self.every)
        _positive(self, "length", self.length)
        if self.length > self.every:
            raise InvalidArgument("*", "n/a", f"WL1: Bursts.length ({self.length}) must not "
                                  f"exceed Bursts.every ({self.every})")

    def times(self, rng: np.random.Generator, n: int) -> Floats:
        """Exact, by a change of time: unit-rate arrivals in "expected arrivals" time,
        mapped back through the piecewise-linear cumulative rate (each period holds
        `burst_rate * length` expected arrivals in its burst, then the rest)."""
        s = np.cumsum(rng.exponential(1.0, n))
        inside_mass = self.burst_rate * self.length
        period_mass = inside_mass + self.rate * (self.every - self.length)
        q = np.floor(s / period_mass)
        r = s - q * period_mass
        inside = r < inside_mass
        offset = r / self.burst_rate
        out = ~inside  # never true when rate is 0: the quiet part then holds no mass
        offset[out] = self.length + (r[out] - inside_mass) / self.rate
        return np.asarray(q * self.every + offset, dtype=np.float64)


Arrivals = Poisson | DailyCycle | Bursts


@dataclass(frozen=True)
class LogNormal:
    median: float
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "median", self.median)
        _positive(self, "sigma", self.sigma, zero=True)

    def draw(self, rng: np.random.Generator, n: int) -> Floats:
        return self.median * np.exp(self.sigma * rng.standard_normal(n))


@dataclass(frozen=True)
class Pareto:
    """Heavy-tailed: at least `scale`, tail index `alpha` (a smaller alpha, a longer tail)."""

    scale: float
    alpha: float = 1.5

    def __post_init__(self) -> None:
        _positive(self, "scale", self.scale)
        _positive(self, "alpha", self.alpha)

    def draw(self, rng: np.random.Generator, n: int) -> Floats:
        return self.scale * (1.0 + rng.pareto(self.alpha, n))  # numpy's is Lomax: shift it


@dataclass(frozen=True)
class Fixed:
    value: float

    def __post_init__(self) -> None:
        _positive(self, "value", self.value, zero=True)

    def draw(self, rng: np.random.Generator, n: int) -> Floats:
        return np.full(n, float(self.value))


Durations = LogNormal | Pareto | Fixed


@dataclass(frozen=True)
class Workload:
    runs: int = 10_000
    arrivals: Arrivals = Poisson(1.0)
    durations: Durations = LogNormal(60.0, 1.0)
    #: outcome -> weight, for runs that finish
    outcomes: tuple[tuple[Status, float], ...] = (
        (Status.COMPLETED, 0.9), (Status.FAILED, 0.08), (Status.CANCELLED, 0.02))
    #: fraction of runs that never finish and stop heartbeating (a crashed worker)
    never_finish: float = 0.0
    #: a running run heartbeats this often (None: never; then only its events renew it)
    heartbeat_every: float | None = None
    #: events appended per run, on average (Poisson), spread over its run time
    events_per_run: float = 0.0
    #: fraction of finished runs a client reads back, and after how long
    late_readers: float = 0.5
    read_delay: Durations = LogNormal(300.0, 1.5)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.runs, bool) or not isinstance(self.runs, int) or self.runs < 0:
            raise InvalidArgument("*", "n/a", f"WL1: Workload.runs must be an int >= 0, "
                                  f"got {self.runs!r}")
        _positive(self, "never_finish", self.never_finish, zero=True)
        _positive(self, "events_per_run", self.events_per_run, zero=True)
        _positive(self, "late_readers", self.late_readers, zero=True)
        if self.heartbeat_every is not None:
            _positive(self, "heartbeat_every", self.heartbeat_every)
        if not self.outcomes or not all(s.terminal for s, _ in self.outcomes):
            raise InvalidArgument("*", "n/a", "WL1: Workload.outcomes must name terminal "
                                  f"statuses, got {self.outcomes!r}")
        for _, weight in self.outcomes:
            _positive(self, "outcomes weight", weight, zero=True)
        if sum(w for _, w in self.outcomes) <= 0:
            raise InvalidArgument("*", "n/a", "WL1: Workload.outcomes weights sum to 0")


@dataclass(frozen=True)
class Drawn:
    """Everything a workload's runs would do, per run index `i` (run id `r{i}`), drawn
    before any policy acts on it. Event arrays are grouped by run, in run order."""

    arrive: Floats      # start times, ascending
    run_for: Floats     # how long each run would run
    finishes: Bools     # False: it never finishes (nor heartbeats)
    outcome: Ints       # index into Workload.outcomes
    reads: Bools        # a client reads it back after it finished
    read_delay: Floats
    append_run: Ints    # one entry per event appended: its run, and when
    append_at: Floats
    beat_run: Ints      # one entry per heartbeat: its run, and when
    beat_at: Floats


def draw(workload: Workload) -> Drawn:
    """The workload's random numbers, all at once, in a fixed order from its seed."""
    rng = np.random.default_rng(workload.seed)
    n = workload.runs
    arrive = workload.arrivals.times(rng, n)
    run_for = workload.durations.draw(rng, n)
    finishes = rng.random(n) >= workload.never_finish
    weights = np.cumsum([w for _, w in workload.outcomes])
    outcome = np.searchsorted(weights, rng.random(n) * weights[-1], side="right")
    outcome = np.minimum(outcome, len(weights) - 1)  # a zero-weight last outcome
    reads = rng.random(n) < workload.late_readers
    read_delay = workload.read_delay.draw(rng, n)
    every = np.arange(n, dtype=np.int64)
    if workload.events_per_run > 0:
        counts = rng.poisson(workload.events_per_run, n)
        append_run = np.repeat(every, counts)
        append_at = arrive[append_run] + rng.random(len(append_run)) * run_for[append_run]
    else:
        append_run, append_at = np.zeros(0, np.int64), np.zeros(0)
    if workload.heartbeat_every is not None:
        h = workload.heartbeat_every
        beats = np.where(finishes, np.floor(run_for / h), 0).astype(np.int64)
        beat_run = np.repeat(every, beats)
        first = np.repeat(np.cumsum(beats) - beats, beats)  # each run's first entry
        k = np.arange(len(beat_run), dtype=np.int64) - first + 1
        beat_at = arrive[beat_run] + k * h
    else:
        beat_run, beat_at = np.zeros(0, np.int64), np.zeros(0)
    return Drawn(arrive=arrive, run_for=run_for, finishes=finishes,
                 outcome=outcome.astype(np.int64), reads=reads, read_delay=read_delay,
                 append_run=append_run, append_at=append_at, beat_run=beat_run,
                 beat_at=beat_at)
