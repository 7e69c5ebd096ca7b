"""A real `redis-server` on a free loopback port, for the tests and `verify`: append-only
file with `appendfsync always`, so a restart loses nothing acknowledged."""

from __future__ import annotations

import atexit
import itertools
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from model.clock import Clock
from model.policy import Policy
from model.protocol import RunStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, directory: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server on PATH: run scripts/bootstrap")
        self.binary = binary
        self.directory = directory or tempfile.mkdtemp(prefix="runbound-redis-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(500):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.01)
        else:
            raise RuntimeError(f"redis-server did not answer on port {self.port}")
        client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to save anything more."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


_server: RedisServer | None = None
_prefixes = itertools.count()


def on_local_server(policy: Policy, clock: Clock) -> RunStore:
    """A factory for the checks: each store under a new prefix on this process's own
    redis-server (started on first use, stopped at exit)."""
    from reference.redis import RedisRunStore

    global _server
    if _server is None:
        _server = RedisServer()
        atexit.register(_server.stop)
    return RedisRunStore(policy, clock, url=_server.url,
                         prefix=f"runbound:{{t{next(_prefixes)}}}:")
