"""The pytest plugin (`runbound.pytest_plugin`, entry point `pytest11: runbound`) in a
store author's suite, run by pytester: each invariant its own item and verdict, a broken
store's failure showing its program, skips with the declared reason, the profile option,
the redis-server fixture. The plugin is loaded the way a user's pytest loads it: from the
installed entry point, not by `-p`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runbound import pytest_plugin
from runbound.model.check.verify import Check

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def author(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A store author's project: the repository's examples importable, no profile set
    (the inner run sets RUNBOUND_PROFILE in this process: monkeypatch puts it back)."""
    pytester.syspathinsert(ROOT)
    monkeypatch.delenv("RUNBOUND_PROFILE", raising=False)
    return pytester


def test_plugin_is_registered_by_its_entry_point(author: pytest.Pytester) -> None:
    result = author.runpytest("--help")
    result.stdout.fnmatch_lines(["*--runbound-profile*"])
    result = author.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.runbound(factory, *"])


def test_a_conforming_store_passes_every_invariant_as_its_own_item(
        author: pytest.Pytester) -> None:
    author.makepyfile(test_author_store="""
        import pytest
        from examples.simple_store import SimpleStore

        @pytest.mark.runbound(factory=SimpleStore, examples=5,
                              invariants=["I13", "I4", "I11", "I17"])
        def test_simple_store_conforms():
            pass
    """)
    result = author.runpytest("-v", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines([
        "*test_simple_store_conforms?I13? PASSED*",
        "*test_simple_store_conforms?I4? PASSED*",
        "*test_simple_store_conforms?I11? PASSED*",
        # I17 is left out by what SimpleStore declares, and the skip says so
        "SKIPPED*I17 not checked: the store does not declare itself durable*",
    ])


def test_a_broken_store_fails_the_invariant_it_breaks_and_shows_the_program(
        author: pytest.Pytester) -> None:
    """TwoWorkersStore starts a second worker: I11 fails with its program and what
    differed; I4, which it keeps, passes beside it. (Which check of I11 finds it first,
    the stateful search or the start-race probe, depends on the search: both name the
    second worker.)"""
    author.makepyfile(test_author_store="""
        import pytest

        @pytest.mark.runbound(factory="runbound.reference.broken:TwoWorkersStore",
                              examples=20, invariants=["I11", "I4"])
        def test_two_workers(runbound_invariant):
            assert runbound_invariant in ("I11", "I4")  # the body runs first
    """)
    result = author.runpytest("-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*test_two_workers?I11? FAILED*",
        "*test_two_workers?I4? PASSED*",
        "runbound.reference.broken:TwoWorkersStore breaks I11",
        "I11 broken (*): *2 *alive after *start_cleanup_worker*",
        "*, *:",  # "program, 2 calls (1-minimal):" or "probe, 2 steps:"
        "    *start_cleanup_worker(*",
        "FAILED*test_two_workers?I11?*",
    ])
    # pytrace=False: the verdict, not the plugin's own frames
    assert "pytest_plugin.py" not in result.stdout.str()


def test_unknown_is_a_failure_never_a_pass_and_skipped_a_skip() -> None:
    undecided = Check("I19", "unknown", 0, 0.0, note="no two calls ever overlapped")
    with pytest.raises(pytest.fail.Exception, match="unknown is not a pass: no two calls"):
        pytest_plugin.verdict("mystore:factory", undecided)
    pytest_plugin.verdict("mystore:factory", Check("I19", "pass", 10, 0.1))  # returns
    # what a store declares on itself (not on its factory) is known only once one is
    # built, as its item runs: the verdict "skipped" then skips it there
    left_out = Check("I17", "skipped", 0, 0.0, note="not checked: the store is not durable")
    with pytest.raises(pytest.skip.Exception, match="I17 not checked: the store is not"):
        pytest_plugin.verdict("mystore:factory", left_out)


def test_a_bad_marker_fails_collection_with_the_reason(author: pytest.Pytester) -> None:
    author.makepyfile(test_author_store="""
        import pytest

        @pytest.mark.runbound(factory="examples.simple_store:SimpleStore",
                              invariants=["I99"])
        def test_a():
            pass
    """)
    result = author.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*test_a: no such invariant I99 (one of I1, *"])
    assert "Traceback" not in result.stdout.str()
    author.makepyfile(test_author_store="""
        import pytest

        @pytest.mark.runbound(factory="examples.simple_store:NoSuchStore")
        def test_b():
            pass
    """)
    result = author.runpytest()
    result.stdout.fnmatch_lines(["*test_b: 'examples.simple_store' has no attribute "
                                 "'NoSuchStore'*"])


def test_runbound_profile_option_sets_the_profile(author: pytest.Pytester) -> None:
    author.makepyfile(test_author_profile="""
        import os

        def test_profile():
            assert os.environ["RUNBOUND_PROFILE"] == "thorough"
    """)
    result = author.runpytest("--runbound-profile", "thorough")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["runbound: profile thorough"])
    result = author.runpytest("--runbound-profile", "nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_runbound_redis_server_fixture_is_a_real_server_of_its_own(
        author: pytest.Pytester) -> None:
    """The session's server answers on its URL, is the process the fixture started
    (INFO's process_id, not a stranger on the port), keeps what it printed, holds a
    Redis store the plugin checks (the pattern docs/conformance.md shows), and is
    stopped after the session."""
    author.makeconftest("""
        import os
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def my_redis_url(runbound_redis_server):
            os.environ["MY_REDIS_URL"] = runbound_redis_server.url
    """)
    author.makepyfile(test_author_redis="""
        import itertools
        import os
        import pytest
        import redis
        from runbound.reference.redis import RedisRunStore

        prefixes = itertools.count()

        def on_test_redis(policy, clock):
            return RedisRunStore(policy, clock, url=os.environ["MY_REDIS_URL"],
                                 prefix=f"test:{{p{next(prefixes)}}}:")

        def test_server(runbound_redis_server):
            client = redis.Redis.from_url(runbound_redis_server.url)
            assert client.ping()
            assert int(client.info("server")["process_id"]) == runbound_redis_server.pid
            assert "Ready to accept connections" in runbound_redis_server.output()
            client.close()
            with open("pid", "w") as out:
                out.write(str(runbound_redis_server.pid))

        @pytest.mark.runbound(factory=on_test_redis, examples=5, invariants=["I13"])
        def test_redis_store_conforms(runbound_redis_server):
            with open("pid") as seen:  # one server for the session
                assert int(seen.read()) == runbound_redis_server.pid
    """)
    result = author.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_redis_store_conforms?I13? PASSED*"])
    pid = int((author.path / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # stopped (and reaped) after the session
        os.kill(pid, 0)


def test_a_store_in_another_language_through_the_marker(author: pytest.Pytester) -> None:
    """`factory="exec:COMMAND"`: the Node store and its broken twin, over the wire
    (specs/wire.md), in the author's own suite."""
    author.makepyfile(test_author_node=f"""
        import pytest

        @pytest.mark.runbound(factory="exec:node {ROOT}/examples/node/store.js",
                              examples=5, invariants=["I4", "I13"])
        def test_node_store():
            pass

        @pytest.mark.runbound(factory="exec:node {ROOT}/examples/node/broken.js",
                              examples=5, invariants=["I4"])
        def test_node_twin():
            pass
    """)
    result = author.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_node_twin?I4? FAILED*"])
    result.stdout.fnmatch_lines(["*breaks I4*"])
