"""The Redis store against a real redis-server on a free loopback port: it survives a
SIGKILL of the server (append-only file, fsync always), and processes share one store."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from two_processes import admitted_by_two_processes

from runbound.model.lifecycle import Status
from runbound.model.policy import Policy
from runbound.reference.redis import RedisRunStore
from runbound.reference.redis_server import RedisServer, free_port


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


@pytest.mark.parametrize("stranger", ["redis-server", "bound socket"])
def test_RedisServer_starts_elsewhere_when_its_port_is_taken(
        server: RedisServer, monkeypatch: pytest.MonkeyPatch, stranger: str) -> None:
    """The free port it picked is taken before the server binds it: by a process that
    answers PING (another redis-server), or by a socket bound but not listening, so the
    port looks free until the server's own bind fails. Either way the new server starts
    on another port, and what answers there is its own process. The old helper took the
    stranger for the new server, or pinged a dead port for 5 s."""
    with socket.socket() as held:
        if stranger == "redis-server":
            taken = server.port
        else:
            held.bind(("127.0.0.1", 0))
            taken = held.getsockname()[1]
        ports = iter([taken, *(free_port() for _ in range(4))])
        monkeypatch.setattr("runbound.reference.redis_server.free_port", lambda: next(ports))
        other = RedisServer()
    try:
        assert other.port != taken
        client = redis.Redis.from_url(other.url)
        assert int(client.info("server")["process_id"]) == other.pid != server.pid
        client.close()
        if stranger == "bound socket":
            assert "Address already in use" in other.output()  # it did try the port
    finally:
        other.stop()


def test_RedisServer_that_cannot_start_says_why(tmp_path: Path) -> None:
    """A server that exits at start-up fails at once, with its own output in the error
    (the old helper sent it to /dev/null and pinged for 5 s)."""
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(RuntimeError) as raised:
        RedisServer(directory=str(not_a_directory))
    assert "chdir" in str(raised.value) or "directory" in str(raised.value).lower()
    assert str(not_a_directory) in str(raised.value)
