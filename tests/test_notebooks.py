"""The notebooks run, small, in the test suite; the committed ones are the same code as
their jupytext sources and show their plots."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from model.notebooks import execute, sources

SMALL = 0.02  # of each notebook's full size: a few seconds each


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.stem)
def test_notebook_runs_small_and_answers(source: Path) -> None:
    notebook = execute(source, SMALL)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot"
    assert any("Answer:" in o.get("text", "") for o in outputs), "no answer printed"


def test_there_are_six_notebooks() -> None:
    assert len(sources()) == 6


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.stem)
def test_committed_notebook_matches_its_source_and_shows_plots(source: Path) -> None:
    committed = nbformat.read(source.with_suffix(".ipynb"),  # type: ignore[no-untyped-call]
                              as_version=4)
    code = [c.source for c in jupytext.read(source).cells]
    assert [c.source for c in committed.cells] == code, (
        f"{source.name} changed: run `make notebooks`")
    outputs = [o for c in committed.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert not [o for o in outputs if o.output_type == "error"]
