"""What the simulator runs: when runs arrive, how long they take, how they end, and who
comes back to read them (`Workload`). Plain frozen values with a `draw` or `times`
method taking the simulator's random generator, so a workload is reproducible from its
seed."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from model.lifecycle import Status


@dataclass(frozen=True)
class Poisson:
    """Arrivals at a constant mean rate (runs per second)."""

    rate: float

    def times(self, rng: random.Random, n: int) -> Iterator[float]:
        t = 0.0
        for _ in range(n):
            t += rng.expovariate(self.rate)
            yield t


@dataclass(frozen=True)
class DailyCycle:
    """A Poisson rate that swings by `amplitude` around `rate` over `period` seconds
    (thinning: draw at the peak rate, keep each arrival with rate(t) / peak)."""

    rate: float
    amplitude: float = 0.8
    period: float = 86_400.0

    def times(self, rng: random.Random, n: int) -> Iterator[float]:
        peak, t, made = self.rate * (1 + self.amplitude), 0.0, 0
        while made < n:
            t += rng.expovariate(peak)
            level = self.rate * (1 + self.amplitude * math.sin(2 * math.pi * t / self.period))
            if rng.random() * peak < level:
                made += 1
                yield t


@dataclass(frozen=True)
class Bursts:
    """`rate` most of the time, `burst_rate` for `length` seconds every `every` seconds."""

    rate: float
    burst_rate: float
    every: float
    length: float

    def times(self, rng: random.Random, n: int) -> Iterator[float]:
        t, made = 0.0, 0
        while made < n:
            inside = t % self.every < self.length
            gap = rng.expovariate(self.burst_rate if inside else self.rate)
            edge = (t // self.every) * self.every + (self.length if inside else self.every)
            if t + gap > edge:  # the rate changes at the edge: memoryless, draw again there
                t = edge
                continue
            t += gap
            made += 1
            yield t


Arrivals = Poisson | DailyCycle | Bursts


@dataclass(frozen=True)
class LogNormal:
    median: float
    sigma: float = 1.0

    def draw(self, rng: random.Random) -> float:
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class Pareto:
    """Heavy-tailed: at least `scale`, tail index `alpha` (a smaller alpha, a longer tail)."""

    scale: float
    alpha: float = 1.5

    def draw(self, rng: random.Random) -> float:
        return self.scale * rng.paretovariate(self.alpha)


@dataclass(frozen=True)
class Fixed:
    value: float

    def draw(self, rng: random.Random) -> float:
        return self.value


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
