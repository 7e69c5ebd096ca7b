"""runbound: an executable specification of a run store, the stores, and the checkers.

The installed package has three layers, one direction of imports:

- `runbound.model`: the spec (lifecycle, policy, operations, invariants), importing
  nothing else; its checkers in `runbound.model.check`, the simulator in
  `runbound.model.sim`;
- `runbound.reference`: the stores (memory, SQLite, Redis), the seed replicas;
- `runbound` itself: the harness that ties stores to checkers (the CLI, the catalog, the
  seeds report, the bench, the pytest plugin).

In the repository `model/` and `reference/` are top-level folders; `runbound/model` and
`runbound/reference` link to them, and the wheel holds them under `runbound`, so a
project's own `model` package never meets runbound's.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("runbound")
except PackageNotFoundError:  # a checkout that is not installed
    __version__ = "0+unknown"
