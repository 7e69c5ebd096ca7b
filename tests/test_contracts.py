"""CrossHair: the model's contracts (PEP 316 docstrings in model/spec.py) survive a bounded
symbolic search, a planted violation is found, and the stateful check runs on the
hypothesis-crosshair backend and catches a broken store there too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from runbound.model.check.profiles import profile_name
from runbound.model.check.stateful import machine_for
from runbound.model.invariants import VIOLATIONS
from runbound.reference.broken import EvictsActiveStore
from runbound.reference.memory import MemoryRunStore

ROOT = Path(__file__).resolve().parent.parent
CROSSHAIR = Path(sys.executable).parent / "crosshair"
#: seconds per condition: a bounded search in CI, a longer one under the thorough profile
BUDGET = {"default": 3, "thorough": 60, "crosshair": 10}[profile_name()]


def crosshair(target: str, budget: float = BUDGET) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CROSSHAIR), "check", "--analysis_kind=PEP316",
         f"--per_condition_timeout={budget}", target],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # the search builds every policy, unbounded ones too: their warning is not a finding
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "PYTHONWARNINGS": "ignore:max_active and stale_after bound"})


def test_model_contracts_hold_and_the_planted_violation_is_found() -> None:
    # both searches at once: each is one process on one core
    # the planted violation gets CPU seconds enough to be found every time (about 4 s of
    # CrossHair's search); the search stops at the first counterexample
    model = crosshair("runbound.model.spec")
    planted = crosshair("tests/crosshair_planted.py", max(BUDGET, 20))
    model_out, _ = model.communicate(timeout=600)
    planted_out, _ = planted.communicate(timeout=600)
    assert model.returncode == 0 and model_out.strip() == "", model_out
    assert planted.returncode == 1, planted_out
    assert "crosshair_planted.py" in planted_out and "error: false when calling" in planted_out
    assert "enforce_cap_oldest_started(" in planted_out


def test_the_model_states_contracts_for_crosshair() -> None:
    """The functions the contracts are on: a contract deleted by accident fails here."""
    from runbound.model import spec

    for fn in (spec.expired, spec.stale, spec.enforce_cap, spec._sweep, spec.buffer_event):
        assert "post:" in (fn.__doc__ or ""), fn.__name__


def test_stateful_check_runs_on_the_crosshair_backend() -> None:
    """The whole machine runs on CrossHair's backend: its symbolic draws never reach the
    store or its threads (each step is made plain data first; before that, a symbolic
    worker interval crashed CrossHair inside the worker thread)."""
    machine = machine_for(MemoryRunStore, name="CrosshairMemory")
    case = machine.TestCase
    case.settings = settings(case.settings, backend="crosshair", max_examples=5,
                             stateful_step_count=6, database=None)
    case("runTest").runTest()


@pytest.mark.skipif(profile_name() != "crosshair", reason="a long run: minutes of "
                    "symbolic search; RUNBOUND_PROFILE=crosshair runs it")
def test_stateful_check_on_the_crosshair_backend_catches_a_broken_store() -> None:
    machine = machine_for(EvictsActiveStore, name="CrosshairEvictsActive", enforce={"I4"})
    case = machine.TestCase
    case.settings = settings(case.settings, backend="crosshair", max_examples=400,
                             stateful_step_count=15, database=None)
    with pytest.raises(VIOLATIONS["I4"]):
        case("runTest").runTest()
