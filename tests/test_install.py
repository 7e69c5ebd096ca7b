"""`pip install runbound` as a store author gets it: the wheel built from this tree,
installed without extras into a fresh venv (no system site-packages), used from a project
outside the repository that has its own `model` and `reference` packages and its own
store (a copy of examples/simple_store.py). Everything runs as that user would run it:
the `runbound` command and pytest, in subprocesses, from the project's directory.

One wheel and one venv for the module (fixtures): the first run downloads the
dependencies, later ones come from pip's cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: what the wheel is built from: the package and the folders its symlinks point into
SOURCES = ("pyproject.toml", "README.md", "runbound", "model", "reference", "specs")
#: a guard, not a timing: a step that hangs fails instead of stalling the suite
GUARD = 600.0

#: the defect planted in the user's broken store: TTL expiry one instant late (a run
#: with ttl=0 stays visible after it ended); the stateful check finds it within 20
#: examples of I13, in two calls
DEFECT = ("now >= run.terminated_at + ttl", "now > run.terminated_at + ttl")

USERS_FACTORY = '''

# --- the user's own code: a factory, and the project's own `model` and `reference` ---
import model
import reference


def factory(policy, clock):
    # runbound is installed beside this project: `import model` must still give the
    # project's own package (runbound's is runbound.model), in every check
    assert model.OWNER == "the user", model
    assert reference.OWNER == "the user", reference
    return SimpleStore(policy, clock)


factory.capabilities = SimpleStore.capabilities
'''

USERS_TESTS = '''
import model
import pytest


@pytest.mark.runbound(factory="usersstore:factory", examples=5,
                      invariants=["I13", "I4", "I17"])
def test_usersstore_conforms():
    assert model.OWNER == "the user"


@pytest.mark.runbound(factory="usersstore_broken:factory", examples=20,
                      invariants=["I13"])
def test_usersstore_broken():
    pass
'''


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment: nothing of this checkout or of the test's own venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RUNBOUND_PROFILE", "PYTEST_ADDOPTS",
                        "PYTHONHOME")}
    return env | extra


def run(*args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=GUARD, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n" \
        f"{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this working tree, built from a copy (a build in the checkout would
    leave build/ and egg-info behind, and race another build)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    ok(run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
           "--disable-pip-version-check", "-w", dist, src, cwd=src))
    (built,) = dist.glob("runbound-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh venv with the wheel, no extras; and pytest, which a store author's
    project has of its own."""
    where = tmp_path_factory.mktemp("venv")
    ok(run(sys.executable, "-m", "venv", where, cwd=where))
    ok(run(where / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile",
           "--disable-pip-version-check", wheel, "pytest", cwd=where))
    return where


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's project: its own `model` and `reference` packages, its store (the
    example store, copied), a broken variant of it, and its tests."""
    where = tmp_path_factory.mktemp("project")
    for package in ("model", "reference"):
        (where / package).mkdir()
        (where / package / "__init__.py").write_text('OWNER = "the user"\n')
    store = (ROOT / "examples" / "simple_store.py").read_text()
    assert "import examples" not in store and "from examples" not in store
    (where / "usersstore.py").write_text(store + USERS_FACTORY)
    assert store.count(DEFECT[0]) == 1, "the planted defect no longer applies"
    (where / "usersstore_broken.py").write_text(store.replace(*DEFECT) + USERS_FACTORY)
    (where / "test_usersstore.py").write_text(USERS_TESTS)
    return where


def test_the_wheel_holds_the_package_and_its_data_only(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/")[0] for n in names}
    assert tops == {"runbound", f"runbound-{version('runbound')}.dist-info"}, tops
    for needed in ("runbound/model/spec.py", "runbound/model/check/conformance.py",
                   "runbound/reference/memory.py", "runbound/reference/redis.lua",
                   "runbound/specs/seeds.json", "runbound/specs/lifecycle.md",
                   "runbound/pytest_plugin.py", "runbound/cli.py"):
        assert needed in names, f"{needed} is not in the wheel"
    assert not [n for n in names if "/tests/" in n or "/examples/" in n or
                "counterexamples" in n]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\nrunbound = runbound.pytest_plugin" in text
    assert "runbound = runbound.cli:main" in text


def test_runbound_version(venv: Path, project: Path) -> None:
    result = ok(run(venv / "bin" / "runbound", "--version", cwd=project))
    assert result.stdout.strip() == f"runbound {version('runbound')}"


def test_conform_holds_the_users_store_beside_its_own_model_package(
        venv: Path, project: Path) -> None:
    result = ok(run(venv / "bin" / "runbound", "conform", "usersstore:factory",
                    "--examples", "20", "--jobs", "1", cwd=project))
    assert "conforms on every invariant checked" in result.stdout
    assert "0 fail, 0 unknown" in result.stdout


def test_conform_writes_a_counterexample_that_replay_reruns(
        venv: Path, project: Path) -> None:
    out = project / "cx"
    broken = run(venv / "bin" / "runbound", "conform", "usersstore_broken:factory",
                 "--examples", "20", "--jobs", "1", "--invariant", "I13", "--out", out,
                 cwd=project)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    trace = out / "usersstore_broken_factory_I13.json"
    assert trace.exists(), sorted(p.name for p in out.iterdir())
    assert json.loads(trace.read_text())["factory"] == "usersstore_broken:factory"
    again = run(venv / "bin" / "runbound", "replay", trace, cwd=project)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "I13" in again.stdout
    fixed = ok(run(venv / "bin" / "runbound", "replay", trace, "usersstore:factory",
                   cwd=project))
    assert "runs clean" in fixed.stdout


def test_explore_runs_installed(venv: Path, project: Path) -> None:
    result = ok(run(venv / "bin" / "runbound", "explore", "--ids", "2", "--horizon", "1",
                    *(f"--allow-unreached={name}" for name in
                      ("AdmissionRefused", "eviction-beside-active", "E1-deadline",
                       "E2-deadline")), cwd=project))
    assert "every invariant and E1, E2 hold in every state" in result.stdout


def test_the_pytest_plugin_runs_in_the_users_suite(venv: Path, project: Path) -> None:
    result = run(venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider", "-v",
                 "-rs", "test_usersstore.py", cwd=project)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr  # the broken store's item fails
    for line in ("test_usersstore_conforms[I13] PASSED", "test_usersstore_conforms[I4] PASSED",
                 "test_usersstore_conforms[I17] SKIPPED", "test_usersstore_broken[I13] FAILED",
                 "usersstore_broken:factory breaks I13", "prune()",
                 "1 failed, 2 passed, 1 skipped"):
        assert line in out, f"{line!r} not in:\n{out}"


def test_crosshair_profile_without_the_extra_is_a_one_line_usage_error(
        venv: Path, project: Path) -> None:
    result = run(venv / "bin" / "runbound", "conform", "usersstore:factory",
                 "--invariant", "I13", "--jobs", "1", cwd=project, RUNBOUND_PROFILE="crosshair")
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pip install 'runbound[crosshair]'" in result.stderr
    plugin = run(venv / "bin" / "python", "-m", "pytest", "-p", "no:cacheprovider",
                 "--runbound-profile", "crosshair", "test_usersstore.py", cwd=project)
    assert plugin.returncode == pytest.ExitCode.USAGE_ERROR, plugin.stdout + plugin.stderr
    assert "pip install 'runbound[crosshair]'" in plugin.stderr


def test_notebooks_without_the_extra_names_it(venv: Path, project: Path) -> None:
    result = run(venv / "bin" / "python", "-m", "runbound.notebooks", cwd=project)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "python -m runbound.notebooks needs the notebooks extra: "
        "pip install 'runbound[notebooks]' (no module named 'jupytext')"], result.stderr
    imported = run(venv / "bin" / "python", "-c", "import runbound.notebooks", cwd=project)
    assert "ImportError: runbound.notebooks needs the notebooks extra: pip install " \
        "'runbound[notebooks]'" in imported.stderr, imported.stderr


def dev_dependencies(pyproject: dict[str, Any]) -> set[str]:
    """Every distribution `pip install -e '.[dev]'` asks for by name: the core
    dependencies and each extra the dev extra reaches (it names runbound[...] itself)."""
    project = pyproject["project"]
    name, extras = project["name"], project["optional-dependencies"]
    names: set[str] = set()
    todo, seen = [*project["dependencies"], *extras["dev"]], {"dev"}
    while todo:
        requirement = Requirement(todo.pop())
        if canonicalize_name(requirement.name) != canonicalize_name(name):
            names.add(canonicalize_name(requirement.name))
            continue
        for extra in requirement.extras - seen:
            seen.add(extra)
            todo += extras[extra]
    return names


def unlocked(pyproject: dict[str, Any], lock: str) -> list[str]:
    """The dev extra's dependencies the lock does not pin."""
    pinned = {canonicalize_name(Requirement(line).name) for line in lock.splitlines()
              if line.strip() and not line.startswith("#")}
    return sorted(dev_dependencies(pyproject) - pinned)


def test_the_lock_pins_every_dependency_of_the_dev_extra() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here (bootstrap
    installs the lock and the project with --no-deps: it would never be installed)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = (ROOT / "requirements.lock").read_text()
    assert not unlocked(pyproject, lock), "not in requirements.lock (run make lock)"
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in pins), [p for p in pins if "==" not in p]
    assert not [p for p in pins if canonicalize_name(Requirement(p).name) == "runbound"]


def test_a_dependency_missing_from_the_lock_is_caught() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = (ROOT / "requirements.lock").read_text()
    pyproject["project"]["optional-dependencies"]["notebooks"].append("Left_Pad>=1")
    assert unlocked(pyproject, lock) == ["left-pad"]  # reached through dev -> notebooks
    without_numpy = "\n".join(x for x in lock.splitlines() if not x.startswith("numpy=="))
    assert "numpy" in unlocked(pyproject, without_numpy)  # a core dependency
