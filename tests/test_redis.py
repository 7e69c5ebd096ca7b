"""The Redis store against a real redis-server on a free loopback port: it survives a
SIGKILL of the server (append-only file, fsync always), and processes share one store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from two_processes import admitted_by_two_processes

from model.errors import InvalidArgument
from model.lifecycle import Status
from model.policy import Policy
from reference.redis import RedisRunStore
from reference.redis_server import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


def test_RedisRunStore_server_restart_loses_nothing_acknowledged(server: RedisServer) -> None:
    """Every call acknowledged before the server is killed with SIGKILL is there after
    it starts again on the same files."""
    with RedisRunStore(Policy(max_events_per_run=3), url=server.url,
                       prefix="t:{restart}:") as store:
        for i in range(50):
            store.start(f"r{i}")
            store.transition(f"r{i}", Status.RUNNING)
            store.append_event(f"r{i}", f"e{i}")
            if i % 2:
                store.transition(f"r{i}", Status.COMPLETED)
        before = store.snapshot()
    server.kill()
    server.start()
    with RedisRunStore(Policy(max_events_per_run=3), url=server.url,
                       prefix="t:{restart}:") as store:
        assert store.snapshot() == before and len(store) == 50


def test_RedisRunStore_two_processes_see_one_bounded_store(server: RedisServer) -> None:
    admitted = admitted_by_two_processes(
        f"RedisRunStore(Policy(max_active=50), url={server.url!r}, prefix='t:{{shared}}:')")
    assert sum(admitted) == 50  # together, exactly max_active: one bounded store
    with RedisRunStore(Policy(max_active=50), url=server.url, prefix="t:{shared}:") as store:
        assert len(store) == 50


def test_RedisRunStore_keys_share_one_hash_slot(server: RedisServer) -> None:
    """Every key carries the prefix's hash tag, so a cluster puts them in one slot."""
    with RedisRunStore(Policy(ttl=5.0), url=server.url, prefix="app:{jobs}:") as store:
        store.start("a")
        store.transition("a", Status.CANCELLED)
        keys = store._client.keys("*")
    assert keys and all("{jobs}" in k for k in keys)
    with pytest.raises(InvalidArgument):
        RedisRunStore(Policy(), url=server.url, prefix="no-tag:")
