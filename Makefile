# The two README commands: `make demo` and `make test`. Both work from nothing but
# Python 3.11 and make: they create .venv and install the project into it first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: demo test bench bench-compare lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py rankwise/rankwise-as-wandb.pth
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rankwise demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Installs wandb / MLflow / tensorboardX into .venv so `make bench` runs them side by side.
bench-compare: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[compare]'
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
