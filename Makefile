# mentor — the two commands at the top of the README.
#   make demo   installs into .venv and runs the quickstart (CPU, minutes)
#   make test   installs into .venv and runs the whole test-suite (unit, integration, slow)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
EXTRAS  ?= all
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned here (a CPU wheel on local disk); the package itself accepts torch>=2.3.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/mentor quickstart --out runs/quickstart

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) runs .pytest_cache
