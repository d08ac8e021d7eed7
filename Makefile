# The newcomer's commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean

# The virtualenv with the project and its test extras; redone when pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Until the QEMU demo lands (issue #7), the demo runs what exists: a KubeVirt test cluster on
# 127.0.0.1 that the real kubectl talks to.
demo: setup
	$(BIN)/python -m stats_log_collector.testing --kubeconfig $(CURDIR)/demo-data/kubeconfig

# Side by side with rsyslog and tail (installs rsyslog with apt-get when run as root).
bench: setup
	$(BIN)/python bench/bench_virtlet_log.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info src/*.egg-info
