# Every target creates .venv and installs the project on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench serve clean peers peers-acro peers-dp

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/insitu demo

lint: $(STAMP)
	$(BIN)/ruff check gateway policies sandbox audit tests bench
	$(BIN)/ruff format --check gateway policies sandbox audit tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Benchmark peers, each in its own virtualenv (their pins clash with ours): see peers/dp/README.md
PEERS := .venv-peers
peers: peers-acro peers-dp

peers-dp: $(PEERS)/opendp/.installed $(PEERS)/smartnoise/.installed

$(PEERS)/opendp/.installed:
	$(PYTHON) -m venv $(PEERS)/opendp
	$(PEERS)/opendp/bin/python -m pip install --quiet 'opendp[polars]==0.16.0' pyarrow numpy
	touch $@

$(PEERS)/smartnoise/.installed:
	$(PYTHON) -m venv $(PEERS)/smartnoise
	$(PEERS)/smartnoise/bin/python -m pip install --quiet 'smartnoise-sql==1.0.10' pyarrow
	touch $@

peers/acro/.venv/.installed: peers/acro/requirements.txt
	$(PYTHON) -m venv peers/acro/.venv
	peers/acro/.venv/bin/python -m pip install --quiet -r peers/acro/requirements.txt
	touch $@

peers-acro: peers/acro/.venv/.installed
	peers/acro/.venv/bin/python peers/acro/run.py tests/fixtures/acro

serve: $(STAMP)
	$(BIN)/insitu serve

clean:
	rm -rf $(VENV) $(PEERS) .insitu .pytest_cache .mypy_cache .ruff_cache bench/results
