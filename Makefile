# Every target first runs scripts/bootstrap, which makes the venv, installs the project
# and its dev tools, and installs redis-server where it is missing (idempotent, fast
# when nothing changed).
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup verify test lint bench notebooks soak

setup:
	@./scripts/bootstrap

verify: setup
	$(PY) -m model.cli verify --json out/verify.json
	$(PY) -m model.cli seeds --from out/verify.json --check

lint: setup
	.venv/bin/ruff check model reference tests examples
	.venv/bin/mypy

test: lint
	$(PY) -m pytest

bench: setup
	$(PY) -m model.bench

# re-execute the notebooks at full size and write their outputs (the tests run them small)
notebooks: setup
	$(PY) -m model.notebooks

# the reliability suite at full size (crashes, stalls, threads, malformed calls, runs that
# never finish), about 20 minutes; the tests run each part small
soak: setup
	$(PY) -m model.soak
