"""Where the spec's own files live: `specs/` (the prose, the seeds' committed
counterexamples). In a checkout it is the top-level folder, which `runbound/specs` links
to; a wheel carries it inside the package. Either way it sits beside this package."""

from __future__ import annotations

from pathlib import Path

# not resolved: in a checkout runbound/model links to model/, and the link is what leads
# back to runbound/specs
SPECS = Path(__file__).parent.parent / "specs"
