"""The checkers' effort, by profile (`RUNBOUND_PROFILE`): default, thorough, crosshair.

Effort is counted in examples, steps and replays, never in seconds, so a loaded machine
reports the same results. The crosshair profile draws through CrossHair's symbolic backend,
which only the `runbound[crosshair]` extra installs: it is registered only when asked for,
so the kit imports without it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from hypothesis import HealthCheck, settings

PROFILES: dict[str, dict[str, Any]] = {
    # CI: every store, every invariant, a few minutes in all
    "default": {"max_examples": 200, "stateful_step_count": 25},
    # RUNBOUND_PROFILE=thorough: long explorations, for a release or a new store
    "thorough": {"max_examples": 2000, "stateful_step_count": 80},
    # RUNBOUND_PROFILE=crosshair: Hypothesis draws through CrossHair's symbolic backend
    # (hypothesis-crosshair), which steers choices down paths random draws rarely take
    "crosshair": {"max_examples": 100, "stateful_step_count": 15, "backend": "crosshair"},
}
#: replays the minimizer may spend on one counterexample (`runbound.model.check.minimize`):
#: effort, not seconds, so a loaded machine reports the same program
MINIMIZE_REPLAYS = {"default": 600, "thorough": 6000, "crosshair": 600}
#: examples per (store, invariant) in `verify` and `conform`: each pair runs alone, and
#: every defect once found is replayed first from the committed counterexamples (the
#: corpus), so the search is for what is new
VERIFY_EXAMPLES = {"default": 200, "thorough": 5000, "crosshair": 100}


class ProfileError(ValueError):
    """RUNBOUND_PROFILE names no profile, or one whose extra is not installed."""


def profile_name() -> str:
    name = os.environ.get("RUNBOUND_PROFILE", "default")
    if name not in PROFILES:
        raise ProfileError(f"RUNBOUND_PROFILE must be one of {', '.join(PROFILES)}, "
                           f"got {name!r}")
    return name


def profile() -> settings:
    """The Hypothesis settings of the current profile, registered on first use."""
    return settings.get_profile(_registered())


def load_profile() -> None:
    """Make the current profile Hypothesis's default (a test suite's conftest)."""
    settings.load_profile(_registered())


def _registered() -> str:
    name = profile_name()
    key = f"runbound-{name}"
    if (PROFILES[name].get("backend") == "crosshair"
            and importlib.util.find_spec("hypothesis_crosshair_provider") is None):
            raise ProfileError("RUNBOUND_PROFILE=crosshair needs CrossHair: "
                               "pip install 'runbound[crosshair]'")
    if key not in _REGISTERED:
        settings.register_profile(
            key, deadline=None, derandomize=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                   HealthCheck.data_too_large], **PROFILES[name])
        _REGISTERED.add(key)
    return key


_REGISTERED: set[str] = set()


def machine_settings(**overrides: Any) -> settings:
    return settings(profile(), **overrides)
