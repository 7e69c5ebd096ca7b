"""The figure rules (runbound.figures): a figure that reads well passes, and each planted
defect is caught by the rule it breaks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")  # no display in the test run; the facts need only a renderer

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from runbound.figures import FigureError, FigureFacts, describe, figure_facts, problems, show
from runbound.model.errors import RunboundError


@pytest.fixture
def fig() -> Iterator[Figure]:
    figure = plt.figure(figsize=(6, 4))
    yield figure
    plt.close(figure)


def good(fig: Figure) -> None:
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0, 1, 4], linestyle="-", marker="o", label="a")
    ax.plot([0, 1, 2], [0, 1, 4], linestyle="--", marker="s", label="b")
    ax.annotate("first", (0, 0), xytext=(5, 5), textcoords="offset points")
    ax.annotate("last", (2, 4), xytext=(-30, -15), textcoords="offset points")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("b hides nothing of a")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))


def test_figures_a_figure_that_reads_well_has_no_problem(fig: Figure) -> None:
    good(fig)
    facts = describe(fig)
    assert problems(facts) == []
    assert [s[0] for s in facts["axes"][0]["series"]] == ["a", "b"]
    assert facts["axes"][0]["texts"] == ["first", "last"]


def test_figures_an_arrow_crossing_a_label_is_no_overlap(fig: Figure) -> None:
    good(fig)
    fig.axes[0].annotate("far away", (0, 0), xytext=(1.4, 0.3), arrowprops={"arrowstyle": "->"})
    assert problems(describe(fig)) == []


def test_figures_F1_an_axis_without_a_label(fig: Figure) -> None:
    good(fig)
    fig.axes[0].set_ylabel("")
    assert [p[:3] for p in problems(describe(fig))] == ["F1:"]


def test_figures_F2_a_figure_without_a_title(fig: Figure) -> None:
    good(fig)
    fig.axes[0].set_title("")
    assert [p[:3] for p in problems(describe(fig))] == ["F2:"]
    fig.suptitle("a suptitle will do")
    assert problems(describe(fig)) == []


def test_figures_F3_two_series_in_the_same_style_whatever_their_colour(fig: Figure) -> None:
    good(fig)
    fig.axes[0].plot([0, 1, 2], [1, 2, 3], linestyle="--", marker="s", color="red",
                     label="c")
    found = problems(describe(fig))
    assert len(found) == 1 and found[0].startswith("F3:") and "'c'" in found[0]


def test_figures_F3_a_hollow_marker_is_another_style(fig: Figure) -> None:
    good(fig)
    fig.axes[0].plot([0, 1, 2], [1, 2, 3], linestyle="--", marker="s",
                     markerfacecolor="none", label="c")
    assert problems(describe(fig)) == []


def test_figures_F4_a_legend_over_the_data(fig: Figure) -> None:
    good(fig)
    ax = fig.axes[0]
    ax.plot([0, 2], [3.8, 3.8], linestyle=":", label="under the legend")
    ax.legend(loc="upper left")
    found = problems(describe(fig))
    assert found and all(p.startswith("F4:") for p in found)
    assert any("under the legend" in p for p in found)


def test_figures_F4_a_line_crossing_the_legend_between_its_points(fig: Figure) -> None:
    ax = fig.add_subplot()
    ax.plot([0, 10], [0, 10], label="diagonal")  # no point of it lies in the box
    ax.set(xlabel="x", ylabel="y", title="t")
    ax.legend(loc="center")
    assert any(p.startswith("F4:") for p in problems(describe(fig)))


def test_figures_F4_a_legend_over_a_bar(fig: Figure) -> None:
    ax = fig.add_subplot()
    ax.bar([0, 1, 2], [10, 10, 10], label="bars")
    ax.set(xlabel="x", ylabel="y", title="t")
    ax.legend(loc="center")
    assert any(p.startswith("F4:") and "bar" in p for p in problems(describe(fig)))


def test_figures_F5_two_labels_drawn_over_each_other(fig: Figure) -> None:
    good(fig)
    fig.axes[0].annotate("second", (0, 0), xytext=(7, 6), textcoords="offset points")
    found = problems(describe(fig))
    assert any(p.startswith("F5:") and "'second'" in p for p in found)


def test_figures_show_refuses_a_bad_figure_with_a_typed_error(fig: Figure) -> None:
    good(fig)
    fig.axes[0].set_xlabel("")
    with pytest.raises(FigureError, match="F1") as caught:
        show(fig)
    assert isinstance(caught.value, RunboundError)
    assert "b hides nothing of a" in str(caught.value)


def test_figures_facts_are_read_back_from_an_output_only_when_recorded() -> None:
    facts = FigureFacts(title="t", axes=[])
    assert figure_facts({"metadata": {"runbound": {"figure": facts}}}) == facts
    assert figure_facts({"metadata": {"image/png": {"width": 1}}}) is None


@pytest.mark.parametrize("absent", ["matplotlib", "IPython"])
def test_figures_without_the_notebooks_extra_names_it(absent: str) -> None:
    """Importing runbound.figures where matplotlib or IPython is not installed is an
    ImportError naming the extra to install, not a bare ModuleNotFoundError."""
    script = f"import sys; sys.modules[{absent!r}] = None; import runbound.figures"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1
    assert last == ("ImportError: runbound.figures needs the notebooks extra: pip install "
                    f"'runbound[notebooks]' (no module named {absent!r})"), result.stderr
