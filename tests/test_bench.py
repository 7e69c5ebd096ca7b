"""`make bench`'s harness: contenders share their rounds, figures are per operation, and
a goal is reported met or missed, never silently (the figures themselves are measured
by `make bench`, not here: no timing is asserted)."""

from __future__ import annotations

from collections.abc import Callable

from runbound import bench


def test_contenders_run_in_the_same_rounds_in_rotated_order() -> None:
    order: list[str] = []

    def contender(name: str, ops: int) -> Callable[[], int]:
        def run() -> int:
            order.append(name)
            return ops
        return run

    got = bench.side_by_side({"a": contender("a", 10), "b": contender("b", 1),
                              "c": contender("c", 5)}, rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(sample.rounds) == 3 for sample in got.values())
    for sample in got.values():
        assert sample.best <= sample.median
        assert all(t >= 0 for t in sample.rounds)


def test_a_goal_is_met_or_missed_by_how_much() -> None:
    fast, slow = bench.Sample((1.0, 2.0, 3.0)), bench.Sample((4.0, 4.0, 5.0))
    met = bench.ratio_row("stores", "case", bench.CPU, "ours", fast, "theirs", slow,
                          goal=1.0)
    missed = bench.ratio_row("stores", "case", bench.CPU, "ours", slow, "theirs", fast,
                             goal=2.0, why="because")
    assert met["ratio"] == 0.25 and bench.verdict(met) == "<= 1x: met"
    assert missed["ratio"] == 4.0 and bench.verdict(missed) == "<= 2x: missed, 2x over"
    rate = bench.rate_row("explore", bench.WALL, (50.0, 40.0, 60.0), "states/s", 100.0)
    assert rate["value"] == 60.0 and rate["median"] == 50.0
    assert bench.verdict(rate) == ">= 100 states/s: missed, at 60.0% of it"
    table = bench.markdown([met, missed, rate])
    assert "| case | cpu | ours: 1.00 s (2.00 s) | theirs: 4.00 s (4.00 s) | 0.25x |" in table
    assert "| explore | wall | 60 states/s (50) |" in table
    assert "- because" in table  # a missed goal says why


def test_the_spec_figure_runs_the_model() -> None:
    drawn = bench.spec_workload(500)
    assert {op for op, _ in drawn} == {"start", "transition", "heartbeat", "append_event",
                                       "get", "list_runs", "prune"}
    assert bench.spec_workload(500) == drawn  # the same calls every run
