"""specs/ says what the code does: the generated lifecycle section is current, and every
invariant is stated, with code and a test that exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from runbound.cli import main
from runbound.model.invariants import INVARIANTS

SPECS = Path(__file__).resolve().parent.parent / "specs"
ROOT = SPECS.parent


def test_lifecycle_table_matches_the_code() -> None:
    assert main(["spec", "--check"]) == 0


def sections() -> dict[str, str]:
    text = (SPECS / "invariants.md").read_text()
    parts = re.split(r"^### ([IE]\d+) — ", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_invariant_is_in_the_spec_with_its_title() -> None:
    found = sections()
    assert list(found) == list(INVARIANTS)
    titles = {i: v.title for i, v in INVARIANTS.items()}
    for iid, body in found.items():
        assert body.splitlines()[0].strip() == titles[iid]


@pytest.mark.parametrize("iid", list(INVARIANTS))
def test_each_invariant_states_the_registrys_kind_and_checkers(iid: str) -> None:
    """The prose says what the registry says: always or eventually, who decides it, and
    the capability it needs."""
    kind = re.search(r"^- kind: (.+)$", sections()[iid], flags=re.M)
    assert kind is not None, f"{iid} states no kind"
    assert kind.group(1) == INVARIANTS[iid].how_decided


@pytest.mark.parametrize("iid", list(INVARIANTS))
def test_invariant_names_code_and_tests_that_exist(iid: str) -> None:
    body = sections()[iid]
    code = re.search(r"- code: (.+)", body)
    tests = re.search(r"- test: ((?:.|\n  )+)", body)
    assert code and tests, f"{iid} names no code or no test"
    for ref in re.findall(r"`([\w.]+)`", code.group(1)):
        module, _, attr = ref.rpartition(".")
        while module and not _importable(module):
            module, _, outer = module.rpartition(".")
            attr = f"{outer}.{attr}"
        obj: object = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    for ref in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", tests.group(1)):
        path, name = ref
        assert re.search(rf"^(def|class) {name}\b|^{name} = ", (ROOT / path).read_text(),
                         flags=re.M), f"{iid}: {path}::{name} does not exist"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
