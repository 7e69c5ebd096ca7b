"""runbound's pytest plugin (the `pytest11` entry point `runbound`): the conformance kit
inside a store author's own test suite.

    import pytest
    from mypackage.stores import factory

    @pytest.mark.runbound(factory=factory, examples=100)
    def test_my_store_conforms() -> None:
        '''One test item per invariant: test_my_store_conforms[I1], [I2], ...'''

The marker takes `factory` (a factory, or "package.module:factory"), and optionally
`invariants` (ids; default every one), `examples` (per invariant; default the profile's)
and `capabilities` (default what the factory declares). Each invariant is its own item
with its own verdict, run after the test's body: pass; a failure printing the 1-minimal
program and what differed (the model's result against the store's); "unknown" (the check
could not decide) a failure too, never a pass; an invariant the declared capabilities
leave out, a skip with the reason. A test may take `runbound_invariant` to see its id.

`--runbound-profile NAME` sets RUNBOUND_PROFILE (default, thorough, crosshair), as the
Hypothesis plugin's `--hypothesis-profile` does for Hypothesis.

The fixture `runbound_redis_server` is a real redis-server for the session (on a free
loopback port, through mirakuru; `.url`, `.output()` for what it printed), for a store
that keeps its runs in Redis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from runbound.model.check import counterexample as cx
from runbound.model.check.capabilities import FactoryFailed
from runbound.model.check.conformance import BadFactorySpec, conform, load_factory
from runbound.model.check.profiles import PROFILES, ProfileError, profile
from runbound.model.check.verify import Check, skipped_checks
from runbound.model.invariants import INVARIANTS
from runbound.model.protocol import Capabilities, StoreFactory
from runbound.reference.redis_server import RedisServer

MARKER = "runbound"
#: the parameter each marked test is split on, one item per invariant
PARAMETER = "runbound_invariant"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("runbound", "runbound conformance checks")
    group.addoption("--runbound-profile", choices=sorted(PROFILES), default=None,
                    help="the checks' effort: sets RUNBOUND_PROFILE (default: the "
                         "environment's, else 'default')")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(factory, invariants=None, examples=None, capabilities=None): "
        "hold the store `factory` builds to runbound's model, one item per invariant")
    chosen = config.getoption("runbound_profile")
    if chosen is not None:
        os.environ["RUNBOUND_PROFILE"] = chosen
    if chosen is not None or "RUNBOUND_PROFILE" in os.environ:
        try:
            profile()  # a profile whose extra is missing is a usage error, now
        except ProfileError as error:
            raise pytest.UsageError(str(error)) from None


def pytest_report_header(config: pytest.Config) -> str:
    return f"runbound: profile {os.environ.get('RUNBOUND_PROFILE', 'default')}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    _, _, caps, wanted = _read(marker, metafunc.definition.nodeid)
    # declared capabilities skip at collection; a store that declares them on itself is
    # asked when its item runs (building one now would run the factory before the
    # fixtures it may need, a server's URL for one)
    skipped = {c.invariant: c.note for c in skipped_checks(caps)} if caps else {}
    params = [pytest.param(i, id=i, marks=[pytest.mark.skip(reason=f"{i} {skipped[i]}")]
                           if i in skipped else []) for i in wanted]
    # the marked test need not take the parameter: pytest hands a function only the
    # arguments of its signature, and the split into items needs the name known
    if PARAMETER not in metafunc.fixturenames:
        metafunc.fixturenames.append(PARAMETER)
    metafunc.parametrize(PARAMETER, params)


def _read(marker: pytest.Mark, where: str) -> tuple[StoreFactory, str,
                                                    Capabilities | None, list[str]]:
    """The marker's arguments, checked: a wrong one fails collection with the reason."""
    kwargs: dict[str, Any] = dict(marker.kwargs)
    if marker.args:
        kwargs.setdefault("factory", marker.args[0])
    extra = set(kwargs) - {"factory", "invariants", "examples", "capabilities"}
    if extra or "factory" not in kwargs:
        bad(f"{where}: @pytest.mark.runbound takes factory= and optionally invariants=, "
            f"examples=, capabilities= (got {', '.join(sorted(kwargs)) or 'nothing'})")
    factory = kwargs["factory"]
    try:
        if isinstance(factory, str):
            name, factory = factory, load_factory(factory)
        else:
            name = f"{factory.__module__}:{getattr(factory, '__qualname__', factory)}"
    except BadFactorySpec as error:
        bad(f"{where}: {error}")
    wanted = list(kwargs.get("invariants") or INVARIANTS)
    unknown = [i for i in wanted if i not in INVARIANTS]
    if unknown:
        bad(f"{where}: no such invariant {', '.join(unknown)} (one of "
            f"{', '.join(INVARIANTS)})")
    caps = kwargs.get("capabilities") or getattr(factory, "capabilities", None)
    if caps is not None and not isinstance(caps, Capabilities):
        bad(f"{where}: capabilities= must be a runbound.model.protocol.Capabilities, got "
            f"{caps!r}")
    return factory, name, caps, wanted


def bad(message: str) -> NoReturn:
    """A wrong marker: its file fails to collect, with the reason and no traceback."""
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """The test's own body first, then the check of its invariant."""
    result = yield
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is not None:
        factory, name, caps, _ = _read(marker, pyfuncitem.nodeid)
        invariant = str(pyfuncitem.callspec.params[PARAMETER])
        try:
            report = conform(factory, capabilities=caps, invariants=[invariant],
                             examples=marker.kwargs.get("examples"), jobs=1, name=name)
        except FactoryFailed as error:  # no store to check: the item fails, saying why
            pytest.fail(f"{name}: {error}", pytrace=False)
        verdict(name, report.checks[0])
    return result


def verdict(name: str, check: Check) -> None:
    """Raise what a verdict means in pytest: a fail or an unknown fails the item, with
    the program and what differed; a skip skips; a pass returns."""
    if check.verdict == "pass":
        return
    if check.verdict == "skipped":
        pytest.skip(f"{check.invariant} {check.note}")
    if check.verdict == "unknown":
        pytest.fail(f"{name}: {check.invariant} could not be decided, and unknown is not "
                    f"a pass: {check.note}", pytrace=False)
    found = check.counterexample
    shown = cx.render(found) if found is not None else f"what differed: {check.note}"
    pytest.fail(f"{name} breaks {check.invariant}\n{shown}", pytrace=False)


@pytest.fixture(scope="session")
def runbound_redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the session, on a free loopback port: `.url` for a
    client, `.output()` for what it printed. Stopped, and its files removed, after."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()
