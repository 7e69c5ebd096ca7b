"""`make kernel`: compile the explorer's kernel with mypyc, in place.

`model/check/explore_kernel.py` is copied to `_explore_kernel_c.py` beside it with the
SHA-256 of its source written into `SOURCE_SHA256`, compiled (mypyc ships with mypy; a C
compiler is needed), and the copy removed: what stays is `_explore_kernel_c.*.so`, ignored
by git. `explore_kernel.explore` uses it only while its recorded hash is the source's,
so an edited kernel is never outrun by a stale binary; without one it runs the same code
as plain Python (a wheel, a machine without a compiler).

Built through setuptools' `Distribution` rather than the `mypyc` command, which runs a
setup.py that reads the project's pyproject.toml: building one extension needs none of
the project's metadata.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from runbound.model.check import explore_kernel

# not resolved: in a checkout the path goes through runbound/model, so mypyc, run from the
# root, names the module runbound.model.check._explore_kernel_c
MODEL = Path(explore_kernel.__file__).parent
SOURCE = MODEL / "explore_kernel.py"
COPY = MODEL / "_explore_kernel_c.py"
MARKER = 'SOURCE_SHA256: Final = ""'


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def build() -> Path:
    """Compile the kernel; the path of the extension module written."""
    from mypyc.build import mypycify  # dev tools: only `make kernel` needs them
    from setuptools import Distribution  # type: ignore[import-untyped]

    text = SOURCE.read_text()
    if text.count(MARKER) != 1:
        raise SystemExit(f"{SOURCE} must hold one line {MARKER!r}")
    for old in MODEL.glob("_explore_kernel_c.*"):
        old.unlink()
    COPY.write_text(text.replace(MARKER, f'SOURCE_SHA256: Final = "{source_hash()}"'))
    root = MODEL.parent.parent.parent
    here = Path.cwd()
    os.chdir(root)  # mypyc names the module by its path from here
    try:
        with tempfile.TemporaryDirectory() as work:
            ext = mypycify([str(COPY.relative_to(root))], opt_level="3",
                           target_dir=str(Path(work) / "c"))
            dist = Distribution({"name": "runbound-kernel", "ext_modules": ext})
            command = dist.get_command_obj("build_ext")
            command.inplace = True
            command.build_temp = str(Path(work) / "temp")
            dist.run_command("build_ext")
    finally:
        COPY.unlink(missing_ok=True)
        os.chdir(here)
    built = sorted(MODEL.glob("_explore_kernel_c.*"))
    if not built:
        raise SystemExit("mypyc wrote no extension module")
    return built[0]


def main() -> None:
    if explore_kernel.compiled() is not None:
        return  # built from this very source: nothing to do
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        print("make kernel: no C compiler; the explorer runs its kernel as plain Python")
        return
    print(f"compiled {build()}", file=sys.stderr)


if __name__ == "__main__":
    main()
