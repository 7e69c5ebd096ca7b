"""The notebooks run, small, in the test suite; the committed ones are the same code as
their jupytext sources, show their plots, and open without Jupyter (an HTML export beside
each). Every plot is judged again here from the facts it was displayed with
(runbound.figures): labelled axes, a title, no series hidden under another, legends and
labels off the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jupytext
import nbformat
import pytest

from runbound.figures import figure_facts, problems
from runbound.notebooks import execute, sources, write

SMALL = 0.02  # of each notebook's full size: a few seconds each


def images(notebook: Any) -> list[Any]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]


def assert_plots_read_well(notebook: Any, name: str) -> None:
    shown = images(notebook)
    assert shown, f"{name}: no plot"
    for n, output in enumerate(shown):
        facts = figure_facts(output)
        assert facts is not None, f"{name}: plot {n} not displayed by runbound.figures.show"
        assert facts["axes"], f"{name}: plot {n} has no axes"
        assert problems(facts) == [], f"{name}: plot {n}"


def assert_knee_marked(notebook: Any, name: str) -> None:
    """Notebook 1's plot marks the knee its answer names, and writes the TTLs on the points."""
    if not name.startswith("01_"):
        return
    facts = figure_facts(images(notebook)[0])
    assert facts is not None
    ax = facts["axes"][0]
    assert "the knee" in [series[0] for series in ax["series"]]
    knee_label = [t for t in ax["texts"] if t.startswith("knee: TTL ")]
    answer = next(o["text"] for c in notebook.cells if c.cell_type == "code"
                  for o in c.outputs if o.get("text", "").startswith("knee: ttl="))
    knee_ttl = int(answer.split("ttl=")[1].split("s")[0])
    ttl_words = {60: "1 min", 300: "5 min", 900: "15 min", 3600: "1 h", 14_400: "4 h",
                 86_400: "24 h"}
    assert len(knee_label) == 1 and f"TTL {ttl_words[knee_ttl]}," in knee_label[0], knee_label
    for ttl in ttl_words.values():
        assert any(ttl in t.split(" ~ ") for t in ax["texts"]), f"no point labelled {ttl}"


def assert_html_shows_the_plots(notebook: Any, page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    for output in images(notebook):
        assert output["data"]["image/png"].strip() in html, f"{page.name}: a plot is missing"


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.stem)
def test_notebook_runs_small_and_answers(source: Path, tmp_path: Path) -> None:
    notebook = execute(source, SMALL)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("Answer:" in o.get("text", "") for o in outputs), "no answer printed"
    assert_plots_read_well(notebook, source.name)
    assert_knee_marked(notebook, source.name)
    page = write(notebook, tmp_path / source.with_suffix(".ipynb").name)
    assert page == tmp_path / source.with_suffix(".html").name
    assert_html_shows_the_plots(notebook, page)


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
    assert not [o for o in outputs if o.output_type == "error"]
    assert_plots_read_well(committed, source.name)
    assert_knee_marked(committed, source.name)
    assert_html_shows_the_plots(committed, source.with_suffix(".html"))
