"""Two processes starting runs on one shared store: the durable stores' tests use it to
show that the bound holds across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

WRITER = textwrap.dedent("""
    import sys
    from runbound.model.errors import AdmissionRefused
    from runbound.model.policy import Policy
    from runbound.reference.redis import RedisRunStore
    from runbound.reference.sqlite import SqliteRunStore
    store = {store}
    admitted = 0
    for i in range(200):
        try:
            store.start(f"{{sys.argv[1]}}-{{i}}")
            admitted += 1
        except AdmissionRefused:
            pass
    print(admitted)
""")


def admitted_by_two_processes(store: str) -> list[int]:
    """Runs each of two processes got admitted, each process building its store with the
    expression `store` and trying 200 starts under its own name."""
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    code = WRITER.format(store=store)
    procs = [subprocess.Popen([sys.executable, "-c", code, name],
                              stdout=subprocess.PIPE, text=True, env=env)
             for name in ("p", "q")]
    return [int(p.communicate()[0]) for p in procs]
