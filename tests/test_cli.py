"""The CLI as a user meets it: a bad argument is one line and exit 2, never a traceback or
an empty table that exits 0; `--version`; `--help` names what the arguments may be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runbound import __version__


def runbound(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbound.cli", *args], text=True,
                          capture_output=True, timeout=120, env=env)


@pytest.mark.parametrize(("args", "says"), [
    (["verify", "--store", "nosuchstore"], "no store matches nosuchstore"),
    (["verify", "--invariant", "I99"], "no such invariant: I99"),
    (["conform", "examples.simple_store:SimpleStore", "--invariant", "I99"],
     "no such invariant: I99"),
    (["conform", "no.such.module:factory"], "no.such.module"),
    (["conform", "examples.simple_store:nosuchfactory"], "nosuchfactory"),
    (["conform", "examples.simple_store"], "package.module:factory"),
    (["seeds", "--from", "/nonexistent/verify.json"], "no verdicts at /nonexistent"),
    (["explore", "--allow-unreached", "nosuch"], "no sometimes-property nosuch"),
    (["explore", "--policy", "{\"ttl\": -1}"], "bad world"),
    (["nosuchcommand"], "invalid choice"),
    (["conform", "examples.simple_store:SimpleStore", "--timeout", "5"],
     "--timeout needs --exec"),
    (["conform", "--exec", "node store.js", "--timeout", "0"], "--timeout needs --exec"),
])
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    result = runbound(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert says in result.stderr, result.stderr


def test_an_unknown_profile_is_a_usage_error() -> None:
    import os
    result = runbound("verify", "--store", "memory", "--invariant", "I1",
                      env={**os.environ, "RUNBOUND_PROFILE": "nosuch"})
    assert result.returncode == 2 and "RUNBOUND_PROFILE must be one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_help() -> None:
    assert runbound("--version").stdout.strip() == f"runbound {__version__}"
    shown = runbound("--help").stdout
    assert "memory, sqlite, redis" in shown and "I1, I2" in shown and "thorough" in shown


def test_explore_json_says_unknown_for_a_vacuous_world(tmp_path: Path) -> None:
    """A world too small to reach every sometimes-property is not a pass: exit 1, and the
    JSON says unknown and names what was never reached."""
    import json
    out = tmp_path / "e.json"
    result = runbound("explore", "--ids", "2", "--horizon", "1", "--json", str(out))
    assert result.returncode == 1
    data = json.loads(out.read_text())
    assert data["verdict"] == "unknown" and data["vacuous"]
