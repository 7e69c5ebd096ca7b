"""The cleanup worker's guarantees (reference/worker.py): one worker however many
threads start it, a prompt and repeatable stop, a sweep each time the interval passes on
the store's clock, bounded logging under a persistent fault. Time is a VirtualClock: the
tests move it and wait for the worker to settle, never for the wall clock."""

from __future__ import annotations

import logging
import threading

import pytest

from runbound.model.check.probes import MAX_LOG_LINES_PER_HOUR, probe_failing_sweeps
from runbound.model.clock import VirtualClock
from runbound.model.lifecycle import Status
from runbound.model.policy import Policy, SweepMode
from runbound.reference.memory import MemoryRunStore
from runbound.reference.worker import CleanupWorker


def threads_of(worker: CleanupWorker) -> list[threading.Thread]:
    """The worker's threads, from the interpreter's own list."""
    return [t for t in threading.enumerate() if t.name == worker.name]


def test_CleanupWorker_concurrent_starts_start_one(clock: VirtualClock) -> None:
    """32 threads released together into start(): exactly one starts a worker."""
    worker = CleanupWorker(lambda: None, clock)
    barrier = threading.Barrier(32)
    results: list[bool] = []

    def go() -> None:
        barrier.wait(10.0)
        results.append(worker.start(3600.0))

    threads = [threading.Thread(target=go) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(threads_of(worker)) == 1 == worker.alive()
    assert worker.stop(timeout=10.0) and worker.alive() == 0 and not threads_of(worker)


def test_CleanupWorker_stop_is_prompt_and_safe_twice(clock: VirtualClock) -> None:
    """A worker asleep for an hour of its clock is gone once stop() returns."""
    worker = CleanupWorker(lambda: None, clock)
    assert worker.start(3600.0)
    assert clock.settle(threads_of(worker)) and clock.sleepers() == 1
    assert worker.stop(timeout=30.0) is True
    assert not threads_of(worker)
    assert worker.stop(timeout=30.0) is False


def test_CleanupWorker_restart_after_stop(clock: VirtualClock) -> None:
    worker = CleanupWorker(lambda: None, clock)
    assert worker.start(3600.0) and worker.stop(10.0)
    assert worker.start(3600.0) and len(threads_of(worker)) == 1
    worker.stop(10.0)


def test_CleanupWorker_sweeps_each_interval_on_its_thread(clock: VirtualClock) -> None:
    """One sweep each time the interval passes on the clock, none before, all on the
    worker's thread."""
    swept: list[threading.Thread] = []
    worker = CleanupWorker(lambda: swept.append(threading.current_thread()), clock)
    worker.start(2.0)
    mine = threads_of(worker)
    assert clock.settle(mine)
    for _ in range(10):
        clock.advance(1.0)
        assert clock.settle(mine)
    worker.stop(10.0)
    assert len(swept) == 5 and set(swept) == set(mine)


def test_CleanupWorker_persistent_fault_logs_bounded_lines(
        clock: VirtualClock, caplog: pytest.LogCaptureFixture) -> None:
    """A sweep that fails for a simulated hour at a 1 s interval: backoff spaces the
    tries, and the failures are logged at the 1st, 2nd, 4th, 8th... only."""
    tries = 0

    def broken() -> None:
        nonlocal tries
        tries += 1
        raise RuntimeError("disk on fire")

    worker = CleanupWorker(broken, clock, logger=logging.getLogger("runbound.test.worker"))
    with caplog.at_level(logging.INFO, logger="runbound.test.worker"):
        worker.start(1.0)
        mine = threads_of(worker)
        assert clock.settle(mine)
        for _ in range(3600):
            clock.advance(1.0)
            assert clock.settle(mine)
        worker.stop(10.0)
    assert 3600 / 32 <= tries < 3600 / 16  # backed off to one try per 32 intervals
    assert len(caplog.records) == tries.bit_length()  # 1, 2, 4, ..., 64: 7 lines
    assert all(r.exc_info and "disk on fire" in str(r.exc_info[1]) for r in caplog.records)


def test_MemoryRunStore_failing_sweeps_log_within_bound() -> None:
    """I18 on the reference, through its own worker: the clock reads NaN for an hour,
    every sweep fails (C1), and the log stays within the bound."""
    result = probe_failing_sweeps(MemoryRunStore)
    assert result.verdict == "pass", result
    assert any("ClockError" in step for step in result.steps)
    assert result.log_lines is not None and 0 < result.log_lines <= MAX_LOG_LINES_PER_HOUR


def test_MemoryRunStore_worker_evicts_on_its_own(clock: VirtualClock) -> None:
    """Background mode: nothing expires until the worker sweeps, and it sweeps once its
    interval has passed on the store's clock."""
    store = MemoryRunStore(Policy(ttl=1.0, sweep=SweepMode.BACKGROUND), clock)
    store.start("a")
    store.transition("a", Status.FAILED)
    clock.advance(5.0)
    store.start("b")  # background mode: no lazy sweep
    assert len(store) == 2
    before = set(threading.enumerate())
    assert store.start_cleanup_worker(10.0)
    assert not store.start_cleanup_worker(10.0)
    mine = [t for t in threading.enumerate() if t not in before]
    assert len(mine) == 1 == store.cleanup_workers_alive()
    assert clock.settle(mine)
    clock.advance(9.0)
    assert clock.settle(mine) and len(store) == 2  # the interval has not passed yet
    clock.advance(1.0)
    assert clock.settle(mine) and len(store) == 1
    store.close()
    assert store.cleanup_workers_alive() == 0 and not any(t.is_alive() for t in mine)


def test_MemoryRunStore_context_manager_closes(clock: VirtualClock) -> None:
    with MemoryRunStore(Policy(), clock) as store:
        store.start_cleanup_worker(3600.0)
    assert store.cleanup_workers_alive() == 0
