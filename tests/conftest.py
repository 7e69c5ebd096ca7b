from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runbound.model.check.profiles import load_profile
from runbound.model.clock import VirtualClock

load_profile()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(1000.0)


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """No test may leave a cleanup worker running."""
    yield
    alive = [t.name for t in threading.enumerate() if t.name.startswith("runbound-cleanup")]
    assert not alive, f"leaked cleanup workers: {alive}"
