"""A real `redis-server` on a free loopback port, for the tests and `verify`: append-only
file with `appendfsync always`, so a restart loses nothing acknowledged.

Started through mirakuru, which waits until the server is ready, notices at once if it
exits instead, and kills its process group. Two things it does not know are added here:
- A free port is found by binding and closing it, so another process can take it before
  the server binds it. The server then exits (its output says "Address already in use")
  and a new port is tried; and the server is ready only when whoever answers on the
  port is this process (`INFO server`'s process_id), never a stranger on the same port.
- The server's output goes to a file in its directory, and every error quotes it.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import IO

import redis
from mirakuru import TCPExecutor
from mirakuru.exceptions import AlreadyRunning, ExecutorError, ProcessExitedWithError
from redis.backoff import NoBackoff
from redis.retry import Retry

from runbound.model.clock import Clock
from runbound.model.policy import Policy
from runbound.model.protocol import RunStore
from runbound.reference.redis import RedisRunStore

#: how many ports to try when each is taken before the server binds it
PORT_ATTEMPTS = 5
#: real seconds a start may take: a guard, the server is usually ready in milliseconds
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Executor(TCPExecutor):
    """Ready when the server answering on the port is this executor's own process."""

    def after_start_check(self) -> bool:
        if self.process is None or not super().after_start_check():
            return False
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1.0,
                             socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
        try:
            return int(client.info("server")["process_id"]) == self.process.pid
        except redis.RedisError:
            return False  # not answering yet, or not Redis
        finally:
            client.close()


class RedisServer:
    def __init__(self, directory: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server on PATH: run scripts/bootstrap")
        self.binary = binary
        self.directory = directory or tempfile.mkdtemp(prefix="runbound-redis-")
        #: the server's stdout and stderr, appended across restarts
        self.log = Path(tempfile.mkdtemp(prefix="runbound-redis-log-")) / "redis-server.log"
        self.port = 0  # chosen by the first start; a restart keeps it (stores hold the URL)
        self._executor: _Executor | None = None
        self._output: IO[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._executor is None or self._executor.process is None:
            raise RuntimeError("the redis-server is not running")
        return self._executor.process.pid

    def output(self) -> str:
        """What the server has printed, for error messages."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> None:
        """Start the server: on its port if it had one, else on a free port."""
        ports = [self.port] if self.port else [free_port() for _ in range(PORT_ATTEMPTS)]
        for port in ports:
            if self._launch(port):
                self.port = port
                return
        raise RuntimeError(f"redis-server found each port taken (tried {ports}); its "
                           f"output:\n{self.output()}")

    def _launch(self, port: int) -> bool:
        """True iff a server of ours is ready on `port`, False iff the port was taken
        (by a stranger, or before the server bound it); any other failure raises."""
        written = self.log.stat().st_size if self.log.exists() else 0
        self._output = self.log.open("ab")
        executor = _Executor(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.directory],
            host="127.0.0.1", port=port, timeout=START_TIMEOUT, sleep=0.01,
            stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT)
        try:
            executor.start()
        except AlreadyRunning:
            self._close_output()
            return False
        except ExecutorError as error:  # it exited, or was never ready within the guard
            self._close_output()
            if (isinstance(error, ProcessExitedWithError)
                    and b"Address already in use" in self.log.read_bytes()[written:]):
                return False
            raise RuntimeError(f"redis-server on port {port}: {error}; its output:\n"
                               f"{self.output()}") from None
        self._executor = executor
        return True

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to save anything more."""
        if self._executor is not None:
            self._executor.kill(sig=signal.SIGKILL)
            self._executor = None
        self._close_output()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.rmtree(self.log.parent, ignore_errors=True)


_server: RedisServer | None = None
_prefixes = itertools.count()


def on_local_server(policy: Policy, clock: Clock) -> RunStore:
    """A factory for the checks: each store under a new prefix on this process's own
    redis-server (started on first use, stopped at exit)."""

    global _server
    if _server is None:
        _server = RedisServer()
        atexit.register(_server.stop)
    return RedisRunStore(policy, clock, url=_server.url,
                         prefix=f"runbound:{{t{next(_prefixes)}}}:")
