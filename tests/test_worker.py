"""The cleanup worker's guarantees (reference/worker.py): one worker however many
threads start it, a prompt and repeatable stop, bounded logging under a persistent fault."""

from __future__ import annotations

import logging
import threading

import pytest

from model.clock import VirtualClock
from model.lifecycle import Status
from model.policy import Policy, SweepMode
from reference.memory import MemoryRunStore
from reference.worker import CleanupWorker


def test_CleanupWorker_concurrent_starts_start_one() -> None:
    """32 threads released together into start(): exactly one starts a worker."""
    worker = CleanupWorker(lambda: None)
    barrier = threading.Barrier(32)
    results: list[bool] = []

    def go() -> None:
        barrier.wait()
        results.append(worker.start(3600.0))

    threads = [threading.Thread(target=go) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and worker.alive() == 1
    assert worker.stop(timeout=10.0) and worker.alive() == 0


def test_CleanupWorker_stop_is_prompt_and_safe_twice() -> None:
    """A worker sleeping a one-hour interval is gone once stop() returns."""
    worker = CleanupWorker(lambda: None)
    assert worker.start(3600.0)
    assert worker.stop(timeout=30.0) is True
    assert worker.alive() == 0
    assert worker.stop(timeout=30.0) is False


def test_CleanupWorker_restart_after_stop() -> None:
    worker = CleanupWorker(lambda: None)
    assert worker.start(3600.0) and worker.stop(10.0)
    assert worker.start(3600.0) and worker.alive() == 1
    worker.stop(10.0)


def test_CleanupWorker_sweeps_each_interval_on_its_thread() -> None:
    swept = threading.Event()
    worker = CleanupWorker(swept.set)
    worker.start(0.001)
    assert swept.wait(timeout=30.0)
    worker.stop(10.0)


def simulated_hour(sweep: object, caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """Run the worker loop over one virtual hour at a 1 s interval; return the number of
    sweeps tried and of lines logged."""
    clock = VirtualClock(0.0)
    tries = 0

    def failing() -> None:
        nonlocal tries
        tries += 1
        if callable(sweep):
            sweep()

    def wait(seconds: float) -> bool:
        clock.advance(seconds)
        return clock() > 3600.0

    worker = CleanupWorker(failing, logger=logging.getLogger("runbound.test.worker"))
    with caplog.at_level(logging.INFO, logger="runbound.test.worker"):
        worker.run(1.0, wait)
    return tries, len(caplog.records)


def test_CleanupWorker_persistent_fault_logs_bounded_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    """A sweep that fails for an hour: backoff spaces the tries, logging is O(log n)."""

    def broken() -> None:
        raise RuntimeError("disk on fire")

    tries, lines = simulated_hour(broken, caplog)
    assert tries < 3600 / 16  # backed off: at most one try per 32 intervals at the end
    assert lines <= tries.bit_length() + 1  # the 1st, 2nd, 4th, 8th... failure only
    assert all("disk on fire" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_MemoryRunStore_worker_evicts_on_its_own(clock: VirtualClock) -> None:
    """Background mode: nothing expires until the worker sweeps, and then it does."""
    store = MemoryRunStore(Policy(ttl=1.0, sweep=SweepMode.BACKGROUND), clock)
    store.start("a")
    store.transition("a", Status.FAILED)
    clock.advance(5.0)
    store.start("b")  # background mode: no lazy sweep
    assert len(store) == 2
    assert store.start_cleanup_worker(0.001)
    assert not store.start_cleanup_worker(0.001)
    for _ in range(10_000):
        if len(store) == 1:
            break
        threading.Event().wait(0.001)
    assert len(store) == 1 and store.cleanup_workers_alive() == 1
    store.close()
    assert store.cleanup_workers_alive() == 0


def test_MemoryRunStore_context_manager_closes(clock: VirtualClock) -> None:
    with MemoryRunStore(Policy(), clock) as store:
        store.start_cleanup_worker(3600.0)
    assert store.cleanup_workers_alive() == 0
