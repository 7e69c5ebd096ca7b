"""Where the spec's own files live: `specs/` (the prose, the seeds' committed
counterexamples). In a checkout it is the top-level folder, which `runbound/specs` links
to; a wheel carries it inside the package. Either way it sits beside this package. And
how every command writes a JSON file (`write_json`)."""

from __future__ import annotations

import json
from pathlib import Path

# not resolved: in a checkout runbound/model links to model/, and the link is what leads
# back to runbound/specs
SPECS = Path(__file__).parent.parent / "specs"


def write_json(path: Path, data: object, indent: int = 2) -> Path:
    """`data` as JSON at `path`, its folder made if need be: a command's `--json PATH`, a
    counterexample, a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")
    return path
