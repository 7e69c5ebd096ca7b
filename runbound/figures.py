"""What a notebook's figure shows, as data, and the rules a figure must keep to be read.

The notebooks display each figure through `show`, which draws it, records its facts
(titles, axis labels, the style of each series, what the legend and the labels cover)
and refuses a figure that breaks a rule:

- F1 every axes has an x and a y label;
- F2 the figure has a title (a suptitle, or a title on each of its axes);
- F3 no two series of one axes share a line style and marker: a series drawn over
  another with the same dashes and markers hides it whatever its colour;
- F4 no legend covers a series, a bar or a label;
- F5 no two labels (annotations, texts) of one axes overlap.

The facts travel with the image in the notebook's output metadata (`runbound.figure`), so
a test can judge a committed notebook's plots again without running it. Matplotlib has
no such linter (its `tight_layout` avoids overlaps between axes, not inside one), hence
this module.
"""

from __future__ import annotations

from typing import Any, TypedDict

try:
    import matplotlib.pyplot as plt
    from IPython.display import display
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.path import Path
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox
except ImportError as missing:  # matplotlib and IPython are the notebooks' extra: say so
    raise ImportError("runbound.figures needs the notebooks extra: pip install "
                      f"'runbound[notebooks]' (no module named "
                      f"{(missing.name or '').partition('.')[0]!r})",
                      name=missing.name) from missing

from runbound.model.errors import RunboundError

METADATA_KEY = "runbound"


class AxesFacts(TypedDict):
    title: str
    xlabel: str
    ylabel: str
    series: list[list[str]]  # [label, linestyle, marker, fill] of each labelled line
    texts: list[str]  # the labels written on the axes (annotations, texts)
    legend_covers: list[str]  # what the legend box overlaps
    overlapping_texts: list[list[str]]  # pairs of labels drawn over each other


class FigureFacts(TypedDict):
    title: str
    axes: list[AxesFacts]


class FigureError(RunboundError, ValueError):
    """A figure that breaks one of the rules F1-F5 (run_id is the figure's title)."""

    def __str__(self) -> str:
        return f"figure {self.run_id!r}: {self.rule}"


def _style(line: Line2D) -> list[str]:
    marker = str(line.get_marker())
    marker = "none" if marker in ("None", "", " ", "none") else marker
    linestyle = str(line.get_linestyle())
    linestyle = "none" if linestyle in ("None", "", " ", "none") else linestyle
    fill = "hollow" if str(line.get_markerfacecolor()) == "none" else "filled"
    return [str(line.get_label()), linestyle, marker, fill]


def _display_path(line: Line2D) -> Path:
    points = line.get_transform().transform(line.get_xydata())
    return Path(points[~(points != points).any(axis=1)])  # NaN breaks the path: drop it


def _text_box(text: Text, renderer: RendererBase) -> Bbox:
    # the words only: an annotation's own extent includes its arrow, which may cross labels
    return Text.get_window_extent(text, renderer)


def _covered(ax: Axes, box: Bbox, renderer: RendererBase) -> list[str]:
    """Everything of `ax` drawn inside `box`: lines, bars, texts."""
    hit: list[str] = []
    for line in ax.lines:
        if line.get_visible() and _display_path(line).intersects_bbox(box, filled=False):
            hit.append(f"line {line.get_label()}")
    for container in ax.containers:
        if isinstance(container, BarContainer):
            for i, patch in enumerate(container.patches):
                if patch.get_window_extent(renderer).overlaps(box):
                    hit.append(f"bar {i} of {container.get_label()}")
    for text in ax.texts:
        if text.get_visible() and text.get_text() and (
                _text_box(text, renderer).overlaps(box)):
            hit.append(f"text {text.get_text()!r}")
    return hit


def describe(fig: Figure) -> FigureFacts:
    """The facts of `fig` as drawn (it is drawn here, so that boxes have their sizes)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    suptitle = fig.get_suptitle()
    axes: list[AxesFacts] = []
    legends = [legend for legend in fig.legends if isinstance(legend, Legend)]
    for ax in fig.axes:
        own = ax.get_legend()
        boxes = [lg.get_window_extent(renderer) for lg in [*legends, *([own] if own else [])]]
        texts = [t for t in ax.texts if t.get_visible() and t.get_text()]
        extents = [_text_box(t, renderer) for t in texts]
        axes.append(AxesFacts(
            title=ax.get_title(),
            xlabel=ax.get_xlabel(),
            ylabel=ax.get_ylabel(),
            series=[_style(line) for line in ax.lines
                    if not str(line.get_label()).startswith("_")],
            texts=[t.get_text() for t in texts],
            legend_covers=[hit for box in boxes for hit in _covered(ax, box, renderer)],
            overlapping_texts=[[a.get_text(), b.get_text()]
                               for i, (a, ea) in enumerate(zip(texts, extents, strict=True))
                               for b, eb in zip(texts[i + 1:], extents[i + 1:], strict=True)
                               if ea.overlaps(eb)],
        ))
    return FigureFacts(title=suptitle, axes=axes)


def problems(facts: FigureFacts) -> list[str]:
    """Each rule the figure breaks, as 'code: what'; empty when it reads well."""
    found: list[str] = []
    if not facts["axes"]:
        found.append("F2: the figure has no axes")
    if not facts["title"] and not all(ax["title"] for ax in facts["axes"]):
        found.append("F2: no suptitle, and not every axes has a title")
    for n, ax in enumerate(facts["axes"]):
        name = f"axes {n}"
        for which in ("xlabel", "ylabel"):
            if not ax[which].strip():
                found.append(f"F1: {name} has no {which[0]} label")
        seen: dict[tuple[str, ...], str] = {}
        for label, *style in ax["series"]:
            if tuple(style) in seen:
                found.append(f"F3: {name}: {label!r} has the style of {seen[tuple(style)]!r}"
                             f" ({', '.join(style)})")
            seen.setdefault(tuple(style), label)
        found += [f"F4: {name}: the legend covers {hit}" for hit in ax["legend_covers"]]
        found += [f"F5: {name}: labels {a!r} and {b!r} overlap"
                  for a, b in ax["overlapping_texts"]]
    return found


def show(fig: Figure) -> None:
    """Display `fig` in the notebook with its facts, or raise FigureError if it reads badly."""
    facts = describe(fig)
    found = problems(facts)
    if found:
        title = facts["title"] or "; ".join(ax["title"] for ax in facts["axes"])
        raise FigureError(title, "drawn", "; ".join(found))
    display(fig, metadata={METADATA_KEY: {"figure": facts}})  # type: ignore[no-untyped-call]
    plt.close(fig)  # or the inline backend would show it a second time


def figure_facts(output: dict[str, Any]) -> FigureFacts | None:
    """The facts recorded with one notebook output, if it is a figure shown by `show`."""
    found = output.get("metadata", {}).get(METADATA_KEY, {}).get("figure")
    return found if found is not None else None
