# Every target first runs scripts/bootstrap, which makes the venv, installs the project
# and its dev tools, and installs redis-server where it is missing (idempotent, fast
# when nothing changed).
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup verify test lint bench notebooks

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
