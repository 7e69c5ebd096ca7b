"""The CLI as a user meets it: a bad argument is one line and exit 2, never a traceback or
an empty table that exits 0; `--version`; `--help` names what the arguments may be;
`--json PATH` on every command that gives verdicts; progress on a terminal only; and
nothing it imports needs an extra."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runbound import __version__
from runbound.cli import main
from runbound.model.calls import policy_to_json
from runbound.model.check import counterexample as cx
from runbound.model.check import explore, explore_kernel
from runbound.model.check.conformance import conform_settings
from runbound.model.check.counterexample import Counterexample, Differed
from runbound.model.clock import VirtualClock
from runbound.model.policy import Policy
from runbound.record import record, recorded
from runbound.reference.memory import MemoryRunStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples.simple_store:SimpleStore"
#: the program that breaks I4 in the store whose cap evicts active runs (conform finds it)
EVICTS = "runbound.reference.broken:EvictsActiveStore"
EVICTION: list[dict[str, Any]] = [
    {"op": "setup", "policy": policy_to_json(Policy(max_terminal=0)), "ids": ["a", "b", "c"],
     "observe": True},
    {"op": "start", "args": ["a"]}, {"op": "start", "args": ["b"]},
    {"op": "transition", "args": ["b", "cancelled"]}]


def runbound(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runbound.cli", *args], text=True,
                          capture_output=True, timeout=120, env=env)


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `runbound ARGV` here and return its one stderr line, having checked it is a
    usage error: exit 2, one line `runbound COMMAND: error: ...`, nothing on stdout."""
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's own errors end the program
        code = stop.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert not out, out
    assert err.count("\n") == 1 and err.endswith("\n"), err
    command = next((a for a in argv if not a.startswith("-")), "")
    assert err.startswith(f"runbound {command}: error: ".replace(" : ", ": ")), err
    return err


@pytest.mark.parametrize(("args", "says"), [
    (["verify", "--store", "nosuchstore"], "no store matches nosuchstore"),
    (["verify", "--invariant", "I99"], "no such invariant: I99"),
    (["conform", EXAMPLE, "--invariant", "I99"], "no such invariant: I99"),
    (["conform", "no.such.module:factory"], "no.such.module"),
    (["conform", "examples.simple_store:nosuchfactory"], "nosuchfactory"),
    (["conform", "examples.simple_store"], "package.module:factory"),
    (["seeds", "--from", "/nonexistent/verify.json"], "no verdicts at /nonexistent"),
    (["explore", "--allow-unreached", "nosuch"], "no sometimes-property nosuch"),
    (["explore", "--policy", "{\"ttl\": -1}"], "bad world"),
    (["nosuchcommand"], "invalid choice"),
    (["conform", EXAMPLE, "--timeout", "5"], "--timeout needs --exec"),
    (["conform", "--exec", "node store.js", "--timeout", "0"],
     "--timeout: must be a number of seconds > 0"),
])
def test_a_bad_argument_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    """Run as a user runs it (a process): exit 2, the reason on one line, no traceback."""
    result = runbound(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert says in result.stderr, result.stderr


@pytest.mark.parametrize(("args", "says"), [
    ([], "the following arguments are required: command"),
    # numbers that make no sense: 0 examples is not "the default"
    (["verify", "--examples", "0"], "--examples: must be at least 1, got 0"),
    (["verify", "--examples", "-3"], "--examples: must be at least 1, got -3"),
    (["verify", "--examples", "many"], "--examples: not a whole number: 'many'"),
    (["verify", "--jobs", "0"], "--jobs: must be at least 1, got 0"),
    (["conform", EXAMPLE, "--examples", "0"], "--examples: must be at least 1"),
    (["conform", EXAMPLE, "--jobs", "-1"], "--jobs: must be at least 1"),
    (["conform", "--exec", "node store.js", "--timeout", "nan"], "seconds > 0, got nan"),
    (["conform", "--exec", "node store.js", "--timeout", "inf"], "seconds > 0, got inf"),
    (["explore", "--ids", "0"], "--ids: must be at least 1"),
    (["explore", "--ids", "9"], "bad world: ids must be 1..8, got 9"),
    (["explore", "--horizon", "-1"], "--horizon: must be at least 0"),
    (["explore", "--interval", "0"], "--interval: must be at least 1"),
    (["explore", "--events", "-1"], "--events: must be at least 0"),
    (["explore", "--max-states", "0"], "--max-states: must be at least 1"),
    (["explore", "--replay", "0"], "--replay: must be at least 1"),
    (["explore", "--policy", "[1]"], "bad world"),
    (["explore", "--policy", "{\"ttl\": \"abc\"}"], "bad world: P1: ttl must be a number"),
    (["explore", "--policy", "{\"nosuch\": 1}"], "nosuch"),
    # a store, a module, an attribute that is not there, or not a factory
    (["explore", "--store", "nosuch", "--replay", "1"], "no store 'nosuch' (one of memory"),
    (["explore", "--store", "memory"], "give --replay DEPTH too"),
    (["explore", "--replay", "1", "--store", "os:getcwd"], "the factory raised TypeError"),
    (["explore", "--replay", "1", "--store", "nosuchmodule:f"], "cannot import 'nosuchmodule'"),
    (["conform", "os:getcwd"], "os:getcwd: the factory raised TypeError"),
    (["conform", "nosuchmodule:f"], "cannot import 'nosuchmodule'"),
    (["conform", "os:nosuchattr"], "'os' has no attribute 'nosuchattr'"),
    (["conform", "--exec", "nosuchprogram-runbound"], "cannot start nosuchprogram-runbound"),
    (["conform", "--exec", " "], "--exec needs a command"),
    (["conform", "--exec", "true"], "exited (exit code 0) without replying"),
    # what would be a table of skips only, exiting 0
    (["conform", EXAMPLE, "--invariant", "I17"], "nothing to check: the store does not "
                                                 "declare itself durable"),
    # paths: missing, a directory for a file, a file for a directory
    (["replay", "/nonexistent/trace.json"], "/nonexistent/trace.json: No such file"),
    (["replay", "/"], "/: Is a directory"),
    (["check-log", "/nonexistent/log"], "/nonexistent/log: No such file"),
    (["check-log", "/"], "/: Is a directory"),
    (["verify", "--json", "/"], "--json: / is a directory, not a file"),
    (["explore", "--json", "/"], "--json: / is a directory, not a file"),
    (["seeds", "--check", "--from", "/"], "no verdicts at /"),
])
def test_every_bad_argument_is_a_one_line_usage_error(
        capsys: pytest.CaptureFixture[str], args: list[str], says: str) -> None:
    """Each bad argument the audit tried ends in exit 2 and one line saying what is wrong,
    before any work is done (nothing on stdout)."""
    assert says in usage_error(capsys, *args)


@pytest.mark.parametrize(("content", "says"), [
    (b"not json", "is not JSON"),
    (b"\xff\xfe\x00", "is not JSON"),
    (b"[1, 2]", "holds no verdicts of `runbound verify --json`"),
    (b'{"a": 1}', "holds no verdicts of `runbound verify --json`"),
    (b'{"stores": [{"name": "seed:S1", "checks": [{"invariant": 4}]}]}',
     "holds no verdicts of `runbound verify --json`"),
    (b'{"stores": [{"name": "seed:S1", "checks": []}]}', "holds no verdicts of seed:S2"),
])
def test_seeds_from_a_file_that_holds_no_verdicts_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes,
        says: str) -> None:
    """`seeds --from` a file that is not verify's JSON (not JSON, another shape, without
    the seeds' verdicts) says so on one line, checked or written."""
    source = tmp_path / "verify.json"
    source.write_bytes(content)
    for check in (["--check"], []):
        assert says in usage_error(capsys, "seeds", *check, "--from", str(source))


@pytest.mark.parametrize("content", [b"not json", b"\xff\xfe\x00", b"[1]", b'{"a": 1}'])
def test_a_file_that_is_no_trace_or_log_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes) -> None:
    """`replay` and `check-log` of a file not of their format: one line, exit 2."""
    path = tmp_path / "f.json"
    path.write_bytes(content)
    assert str(path) in usage_error(capsys, "replay", str(path))
    assert str(path) in usage_error(capsys, "check-log", str(path))


def test_an_unknown_profile_is_a_usage_error() -> None:
    """RUNBOUND_PROFILE=nosuch is one line and exit 2 for every command that checks."""
    env = {**os.environ, "RUNBOUND_PROFILE": "nosuch"}
    for args in (["verify", "--store", "memory", "--invariant", "I1"],
                 ["conform", EXAMPLE, "--invariant", "I1"]):
        result = runbound(*args, env=env)
        assert result.returncode == 2 and "RUNBOUND_PROFILE must be one of" in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


def test_zero_examples_is_not_the_default() -> None:
    """The library refuses 0 examples as the CLI does, rather than reading it as None."""
    assert conform_settings(7).max_examples == 7
    assert conform_settings(None).max_examples > 7
    with pytest.raises(ValueError, match="at least 1, got 0"):
        conform_settings(0)


def test_version_and_help() -> None:
    """`--version` names it; `--help` names the stores, invariants and profiles."""
    assert runbound("--version").stdout.strip() == f"runbound {__version__}"
    shown = runbound("--help").stdout
    assert "memory, sqlite, redis" in shown and "I1, I2" in shown and "thorough" in shown


@pytest.mark.parametrize("command", ["verify", "conform", "replay", "seeds", "spec",
                                     "explore", "check-log"])
def test_each_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    """`runbound COMMAND --help` exits 0 with its usage; every verdict command names
    `--json PATH`."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    shown = capsys.readouterr().out
    assert stop.value.code == 0 and shown.startswith(f"usage: runbound {command}")
    if command not in ("seeds", "spec"):  # check-log's PATH is optional: alone, stdout
        assert "--json PATH" in shown or "--json [PATH]" in shown


def test_explore_json_says_unknown_for_a_vacuous_world(tmp_path: Path) -> None:
    """A world too small to reach every sometimes-property is not a pass: exit 1, and the
    JSON says unknown and names what was never reached."""
    out = tmp_path / "e.json"
    result = runbound("explore", "--ids", "2", "--horizon", "1", "--json", str(out))
    assert result.returncode == 1
    data = json.loads(out.read_text())
    assert data["verdict"] == "unknown" and data["vacuous"]


def test_explore_json_is_written_for_an_incomplete_search(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Stopped at --max-states, explore still writes its JSON: unknown, not complete."""
    out = tmp_path / "e.json"
    assert main(["explore", "--max-states", "50", "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    assert data["verdict"] == "unknown" and data["complete"] is False
    assert data["replay"] is None


def test_explore_json_holds_the_replay(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    """With --replay, the JSON says what the store did on the paths."""
    out = tmp_path / "e.json"
    assert main(["explore", "--replay", "2", "--json", str(out)]) == 0
    replayed = json.loads(out.read_text())["replay"]
    assert replayed["store"] == "memory" and replayed["depth"] == 2
    assert replayed["programs"] > 0 and replayed["failure"] is None


def _eviction_trace(path: Path) -> Path:
    found = Counterexample.of_program("I4", EVICTION, Differed("active run 'a' evicted"),
                                      factory=EVICTS)
    return cx.write(found, path)


def test_replay_json_of_a_program(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`replay --json PATH`: fail with the counterexample (in its one JSON form) while the
    store still breaks the invariant; pass with none on a store that does not."""
    trace = _eviction_trace(tmp_path / "I4.json")
    out = tmp_path / "out" / "replay.json"
    assert main(["replay", str(trace), "--json", str(out)]) == 1
    failed = json.loads(out.read_text())
    assert failed["verdict"] == "fail" and failed["kind"] == "program"
    assert failed["invariant"] == "I4" and failed["factory"] == EVICTS
    again = cx.from_json(failed["counterexample"])
    assert again.invariant == "I4" and again.calls == 3 and "evicted" in failed["note"]
    clean = "runbound.reference.memory:MemoryRunStore"
    assert main(["replay", str(trace), clean, "--json", str(out)]) == 0
    passed = json.loads(out.read_text())
    assert passed["verdict"] == "pass" and passed["counterexample"] is None
    assert passed["factory"] == clean
    assert "wrote" not in capsys.readouterr().err


@pytest.mark.parametrize(("edit", "says"), [
    ({"factory": "os:getcwd"}, "os:getcwd: the factory raised TypeError"),
    ({"factory": "nosuchmodule:f"}, "cannot import 'nosuchmodule'"),
    ({"factory": "exec:nosuchprogram-runbound"}, "cannot start nosuchprogram-runbound"),
    ({"factory": ""}, "names no factory: give one"),
    ({"program": [EVICTION[0], {"op": "nosuchop", "args": []}]},
     "its program is not one the model runs: KeyError"),
])
def test_a_trace_that_cannot_be_replayed_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, edit: dict[str, Any],
        says: str) -> None:
    """A trace whose factory builds no store, or whose program the model cannot run, is
    one line and exit 2 from `replay`, not a traceback."""
    trace = _eviction_trace(tmp_path / "I4.json")
    trace.write_text(json.dumps(json.loads(trace.read_text()) | edit))
    assert says in usage_error(capsys, "replay", str(trace))


def _failing_log(path: Path) -> None:
    """A recorded log whose read was edited to a status nothing moved the run to."""
    clock = VirtualClock(1000.0)
    store, recording_clock = recorded(MemoryRunStore)(Policy(), clock)
    with record(store, path, clock=recording_clock) as live:
        live.start("a")
        live.transition("a", "running")
        live.get("a")
    lines = path.read_text().splitlines(keepends=True)
    edited = json.loads(lines[-1])
    edited["ok"]["run"]["status"] = "pending"  # it was running
    path.write_text("".join([*lines[:-1], json.dumps(edited) + "\n"]))


def test_check_log_and_replay_json_of_a_history(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    """`check-log --json PATH` writes the verdict beside the report; `--json` alone prints
    only the JSON; `replay HISTORY --json PATH` writes the history's verdict."""
    log = tmp_path / "edited.log"
    _failing_log(log)
    verdict = tmp_path / "check.json"
    assert main(["check-log", str(log), "--out", str(tmp_path / "t"), "--json",
                 str(verdict)]) == 1
    shown = capsys.readouterr().out
    assert f"wrote {verdict}" in shown and not shown.startswith("{")
    assert json.loads(verdict.read_text())["verdict"] == "fail"
    assert main(["check-log", str(log), "--out", str(tmp_path / "t"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "fail"
    out = tmp_path / "replay.json"
    assert main(["replay", str(tmp_path / "t" / "edited.history.json"), "--json",
                 str(out)]) == 1
    data = json.loads(out.read_text())
    assert data["verdict"] == "fail" and data["kind"] == "history"
    assert data["factory"] is None and cx.from_json(data["counterexample"]).kind == "history"


def test_conform_titles_its_table_for_what_it_is(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    """conform's table is titled as a conformance report, not as verify's, and has no
    "expected" row (a store held to the spec has no known defects to expect: every
    check must pass, as the summary line says)."""
    assert main(["conform", EVICTS, "--invariant", "I4", "--jobs", "1", "--out",
                 str(tmp_path)]) == 1
    shown = capsys.readouterr().out
    assert "conformance of EvictsActiveStore: invariant x verdict" in shown
    assert "verdicts: invariant x store" not in shown
    assert "expected" not in shown
    assert main(["verify", "--broken", "--store", "x:evicts-active", "--invariant", "I4",
                 "--jobs", "1"]) == 0
    assert re.search(r"^ *expected +yes", capsys.readouterr().out, flags=re.M)


@pytest.mark.parametrize("engine", ["oracle", "kernel", "pure"])
def test_a_search_reports_its_progress(engine: str) -> None:
    """`progress(states, depth)` is called now and then while a search runs (not at every
    state), with rising counts that never pass the result's."""
    seen: list[tuple[int, int]] = []
    world = explore.World()
    if engine == "oracle":
        result = explore.explore(world, max_states=2_000, progress=lambda *a: seen.append(a))
        every = explore.PROGRESS_EVERY
    else:
        result = explore_kernel.explore(world, pure=engine == "pure",
                                        progress=lambda *a: seen.append(a))
        every = explore_kernel.PROGRESS_EVERY
    assert 1 <= len(seen) <= result.states // every
    assert [s for s, _ in seen] == sorted({s for s, _ in seen})
    assert seen[-1][0] <= result.states and seen[-1][1] <= result.depth


def test_replaying_paths_reports_its_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """`replay_paths` calls `progress(programs, depth)` every PROGRESS_EVERY programs."""
    monkeypatch.setattr(explore, "PROGRESS_EVERY", 10)
    seen: list[tuple[int, int]] = []
    replayed = explore.replay_paths(explore.World(), MemoryRunStore, 2,
                                    progress=lambda *a: seen.append(a))
    assert [n for n, _ in seen] == list(range(10, replayed.programs + 1, 10))
    assert all(1 <= depth <= 2 for _, depth in seen)


def test_explore_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    """On a terminal (stderr a pty), explore shows the states and depth as it goes; its
    stdout and a captured stderr get none of it."""
    args = [sys.executable, "-m", "runbound.cli", "explore", "--oracle", "--max-states",
            "3000", "--json", str(tmp_path / "e.json")]
    main_fd, terminal = pty.openpty()
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=terminal) as process:
        os.close(terminal)
        shown = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if select.select([main_fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # the other end closed: the process is done
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        assert process.stdout is not None
        out = process.stdout.read().decode()
    os.close(main_fd)
    assert process.returncode == 1  # incomplete: unknown
    assert b"exploring: " in shown and b" states, depth " in shown, shown
    assert "exploring" not in out
    captured = runbound(*args[3:])
    assert "exploring" not in captured.stderr + captured.stdout


def test_notebooks_command_refuses_what_makes_no_sense(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`python -m runbound.notebooks`: a scale of 0 or a name no notebook has is exit 2
    (not a run of nothing that exits 0)."""
    pytest.importorskip("jupytext")
    from runbound import notebooks

    for argv in (["--scale", "0"], ["--scale", "nan"], ["nosuchnotebook"],
                 ["--out", str(Path(__file__)), "01"]):
        with pytest.raises(SystemExit) as stop:
            notebooks.main(argv)
        assert stop.value.code == 2
        assert "python -m runbound.notebooks: error: " in capsys.readouterr().err


#: the import names of each distribution an extra installs (a new extra's must be added)
EXTRA_MODULES = {
    "crosshair-tool": ["crosshair"], "hypothesis-crosshair": ["hypothesis_crosshair_provider"],
    "nbclient": ["nbclient"], "nbformat": ["nbformat"], "nbconvert": ["nbconvert"],
    "ipykernel": ["ipykernel", "IPython"], "jupytext": ["jupytext"],
    "matplotlib": ["matplotlib"],
}


def test_nothing_the_installed_kit_imports_needs_an_extra() -> None:
    """With every extra's modules absent, each module of `runbound` imports (but the
    notebooks' two, which say which extra they need), and the CLI runs."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    dists = {req.split(">")[0].split("=")[0].split("[")[0].strip()
             for name in ("crosshair", "notebooks") for req in extras[name]}
    assert dists <= EXTRA_MODULES.keys(), dists - EXTRA_MODULES.keys()
    blocked = sorted(m for d in dists for m in EXTRA_MODULES[d])
    modules = sorted(p.stem for p in (ROOT / "runbound").glob("*.py")
                     if p.stem not in ("__init__", "figures", "notebooks"))
    script = "\n".join([
        "import sys",
        *(f"sys.modules[{name!r}] = None" for name in blocked),
        *(f"import runbound.{name}" for name in modules),
        "from runbound.cli import main",
        "assert main(['explore', '--ids', '1', '--horizon', '0']) == 1  # vacuous",
        "for extra in ('figures', 'notebooks'):",
        "    try:",
        "        __import__('runbound.' + extra)",
        "    except ImportError as error:",
        "        print(error)",
        "    else:",
        "        raise SystemExit(f'runbound.{extra} imported without its extra')",
    ])
    # no plugin entry points: hypothesis-crosshair's would load the module blocked here
    # (without the extra installed it has none)
    result = subprocess.run([sys.executable, "-c", script], text=True, capture_output=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "HYPOTHESIS_NO_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    said = result.stdout.splitlines()[-2:]
    assert all("needs the notebooks extra: pip install 'runbound[notebooks]'" in line
               for line in said), said
