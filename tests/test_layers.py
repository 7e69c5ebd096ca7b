"""The house has one direction of imports: the spec at the bottom importing nothing of the
project but itself, the checkers and the simulator above it, the stores beside them, the
harness (`runbound/*.py`) on top. Read from the source, not from what happens to be
imported, so a new import that breaks a layer fails here before it hides a loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"errors", "lifecycle", "policy", "records", "clock", "spec", "invariants", "files",
        "protocol", "diagram", "calls", "wire", "rules"}


def layer(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[0] == "model":
        return {"check": "check", "sim": "sim"}.get(parts[1], "spec")
    return {"reference": "stores", "runbound": "harness"}[parts[0]]


def imported(module: str) -> str | None:
    """The layer a module of the project belongs to, None for anything else."""
    parts = module.split(".")
    if parts[0] in ("model", "reference"):
        return "top-level"  # only ever imported as runbound.model / runbound.reference
    if parts[0] != "runbound":
        return None
    if len(parts) == 1:
        return "harness"
    if parts[1] == "model":
        if len(parts) == 2 or parts[2] in SPEC:
            return "spec"
        return {"check": "check", "sim": "sim"}.get(parts[2], "spec")
    return "stores" if parts[1] == "reference" else "harness"


#: what each layer may import of the project
ALLOWED = {
    "spec": {"spec"},
    "check": {"spec", "check"},
    "sim": {"spec", "sim"},
    "stores": {"spec", "stores"},
    "harness": {"spec", "check", "sim", "stores", "harness"},
}

SOURCES = sorted(p for d in ("model", "reference") for p in (ROOT / d).rglob("*.py")) + \
    sorted((ROOT / "runbound").glob("*.py"))


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, inside a function) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            local |= {id(n) for n in ast.walk(node) if n is not node}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, id(node) in local))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, id(node) in local) for a in node.names]
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path: Path) -> None:
    here = layer(path)
    wrong = [f"line {line}: {module} ({imported(module)})"
             for line, module, _ in imports(path)
             if imported(module) is not None and imported(module) not in ALLOWED[here]]
    assert not wrong, f"{path.relative_to(ROOT)} is in the {here} layer but imports " \
        + "; ".join(wrong)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_of_the_project_are_at_the_top(path: Path) -> None:
    """An import inside a function hides a loop between packages from the reader (and
    from the test above); none is needed once the layers go one way."""
    hidden = [f"line {line}: {module}" for line, module, local in imports(path)
              if local and imported(module) is not None]
    assert not hidden, f"{path.relative_to(ROOT)} imports inside a function: {hidden}"


def test_a_layer_violation_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a spec module importing a store is reported."""
    bad = ROOT / "model" / "_planted_layer_violation.py"
    bad.write_text("from runbound.reference.memory import MemoryRunStore\n")
    try:
        with pytest.raises(AssertionError, match="spec layer but imports"):
            test_imports_go_one_way(bad)
    finally:
        bad.unlink()
