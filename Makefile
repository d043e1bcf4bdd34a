# Two commands set everything up: `make repro` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: repro test test-fast install bench plots clean

# The venv is rebuilt when pyproject.toml changes.
$(BIN)/vistage: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (vistage needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/vistage

repro: install
	$(BIN)/dvc repro

# One pytest-xdist worker per core, each test file on one worker (its module fixtures built once);
# each worker's torch keeps to one thread (tests/conftest.py). XDIST="" runs in one process.
XDIST ?= -n auto --dist loadfile

test: install
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# the quick tier: everything but the tests marked slow (end-to-end dvc runs, DDP, real data sets)
test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

# `dvc plots show` as reports/plots/index.html, viewable offline (the Vega libraries inlined);
# make plots REVS="HEAD~1" compares the workspace with HEAD~1 (dvc plots diff)
plots: install
	$(BIN)/python -m vistage.offline_plots $(if $(REVS),diff $(REVS),show)

# every speed claim against its baseline, on this machine: prints ratios, writes metrics/bench.json
bench: install
	$(BIN)/python bench/suite.py

clean:
	rm -rf $(VENV)
