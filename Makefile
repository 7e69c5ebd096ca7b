# Every target first runs scripts/bootstrap, which makes the venv, installs the project
# and its dev tools, and installs redis-server where it is missing (idempotent, fast
# when nothing changed).
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup verify test lint bench notebooks soak lock kernel

setup:
	@./scripts/bootstrap

verify: setup
	$(PY) -m runbound.cli verify --json out/verify.json
	$(PY) -m runbound.cli seeds --from out/verify.json --check

lint: setup
	.venv/bin/ruff check runbound/*.py model reference tests examples
	.venv/bin/mypy

test: lint kernel
	$(PY) -m pytest

bench: setup kernel
	$(PY) -m runbound.bench

# compile the explorer's kernel with mypyc, in place (skipped while the build is fresh;
# without a compiler the kernel runs as plain Python)
kernel: setup
	$(PY) -m runbound.kernel_build

# re-execute the notebooks at full size and write their outputs and HTML exports (the tests
# run them small)
notebooks: setup
	$(PY) -m runbound.notebooks

# the reliability suite at full size (crashes, stalls, threads, malformed calls, runs that
# never finish), about 20 minutes; the tests run each part small
soak: setup
	$(PY) -m runbound.soak

# pin what the venv holds, after `make test` passed in it: the exact versions the tests ran
# with (pip freeze, not a fresh resolution, which could pick versions never tested). A
# dependency new to pyproject.toml is installed first (pip keeps what is there); runbound
# itself is left out: scripts/bootstrap installs it on top with --no-deps.
lock:
	.venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# The exact versions the tests ran with (CPython 3.11, Linux x86_64): \`make lock\`."; \
	  echo "# scripts/bootstrap installs this, then the project with --no-deps."; \
	  .venv/bin/pip freeze --exclude-editable --require-virtualenv | grep -v '^runbound=='; \
	} > requirements.lock
