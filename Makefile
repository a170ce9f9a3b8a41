# The README's two commands: `make serve` (the main job) and `make test` (install + all checks).
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install serve test lint bench faults

# What serving needs, and nothing else: the first answer comes sooner.
$(BIN)/.installed-serve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e .
	touch $@

# The test tools on top (mypy, ruff, pytest, playwright, schemathesis, …).
$(BIN)/.installed: $(BIN)/.installed-serve
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# Sandboxed when bubblewrap is there (Debian: apt-get install bubblewrap); else one trust
# domain, which serve says at start (docs/security.md).
SANDBOX := $(if $(shell command -v bwrap),,--no-sandbox)

serve: $(BIN)/.installed-serve
	$(BIN)/conveyor serve examples/app.py:square examples/app.py:slow_report $(SANDBOX)

lint: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

# Every test, the fault-injection suite included (its reports are printed at the end).
test: lint
	$(BIN)/pytest -q

# The fault-injection suite alone (tests/faults/, about 6–10 minutes; see docs/reliability.md).
faults: install
	$(BIN)/pytest -q -m faults -rA

bench: install
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/store_bench.py --backend all
	$(BIN)/python bench/exec_bench.py --backend all
	$(BIN)/python bench/gateway_bench.py
