# The two README commands: `make demo` and `make test`. Both work from nothing but
# Python 3.11 and make: they create .venv and install the project into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: demo test bench bench-compare lint clean venv

venv: $(STAMP)

# test + media: the tests of plotly figures, mp4 video and pandas tables run too (nothing skips for want of
# a package the project can install)
$(STAMP): pyproject.toml setup.py rankwise/rankwise-as-wandb.pth
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,media]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rankwise demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# ruff, configured in pyproject.toml ([tool.ruff]): lint, then the formatter in check mode (fails, changing nothing)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# The same benchmarks with wandb / MLflow / tensorboardX side by side. They go into a venv of their own,
# so .venv stays as CI has it (no wandb: the tests check what `import wandb` finds).
CMP_VENV  := .venv-compare
CMP_STAMP := $(CMP_VENV)/.installed

$(CMP_STAMP): pyproject.toml setup.py rankwise/rankwise-as-wandb.pth
	$(PYTHON) -m venv $(CMP_VENV)
	$(CMP_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CMP_VENV)/bin/python -m pip install --quiet -e '.[test,compare]'
	touch $(CMP_STAMP)

bench-compare: $(CMP_STAMP)
	$(CMP_VENV)/bin/python -m benchmarks --compare $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(CMP_VENV) build *.egg-info .pytest_cache
