"""Execute the notebooks in notebooks/: each `NN_*.py` (jupytext, percent format) is the
source; its paired `.ipynb` holds the outputs, plots included, as committed.

`python -m runbound.notebooks` re-executes every notebook at full size and writes the
`.ipynb` files, each with an HTML export beside it (plots inline) that opens without
Jupyter; `--scale 0.05` runs them small (what the tests do, into a temporary
directory). The scale reaches each notebook as RUNBOUND_NOTEBOOK_SCALE.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runbound.cli import positive

try:
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
except ImportError as missing:  # the tools are an extra: say which, not a traceback
    if __name__ == "__main__":
        raise SystemExit("python -m runbound.notebooks needs the notebooks extra: pip install "
                         f"'runbound[notebooks]' (no module named {missing.name!r})") from None
    raise ImportError("runbound.notebooks needs the notebooks extra: pip install "
                      "'runbound[notebooks]'") from missing

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ROOT = NOTEBOOKS.parent


def sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def execute(source: Path, scale: float = 1.0, timeout: int = 600) -> Any:
    """Run the notebook written in `source`; return it with its outputs."""
    notebook = jupytext.read(source)
    os.environ["RUNBOUND_NOTEBOOK_SCALE"] = str(scale)
    python_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{python_path}" if python_path else str(ROOT)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return notebook


def write(notebook: Any, target: Path) -> Path:
    """Write the executed `notebook` to `target` (.ipynb) and its HTML export beside it."""
    nbformat.write(notebook, target)  # type: ignore[no-untyped-call]
    html, _ = HTMLExporter().from_notebook_node(notebook)  # type: ignore[no-untyped-call]
    page = target.with_suffix(".html")
    page.write_text(html, encoding="utf-8")
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbound.notebooks", description=__doc__)
    # > 0: a scale of 0 would run every notebook on nothing
    parser.add_argument("--scale", type=positive(""), default=1.0,
                        help="the notebooks' sizes, times this (default 1: full size)")
    parser.add_argument("--out", type=Path, default=NOTEBOOKS,
                        help="where to write the executed .ipynb files")
    parser.add_argument("only", nargs="*", help="notebook names (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only if not any(n in s.name for s in sources())]
    if unknown:  # or it would run nothing and exit 0
        parser.error(f"no notebook named {', '.join(unknown)} (they are: "
                     f"{', '.join(s.stem for s in sources())})")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a directory")
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sources():
        if args.only and not any(name in source.name for name in args.only):
            continue
        notebook = execute(source, args.scale)
        target = args.out / source.with_suffix(".ipynb").name
        page = write(notebook, target)
        print(f"wrote {target} and {page.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
