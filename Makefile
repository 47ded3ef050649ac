# Every target creates .venv and installs the project on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-rest lint typecheck unit bench serve clean peers peers-acro peers-dp mutate spark spark-stop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The suite runs the Spark engine against a real Spark Connect server: the `spark` extra too.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/insitu demo

lint: $(STAMP)
	$(BIN)/ruff check gateway policies sandbox audit insitu tests bench deploy examples
	$(BIN)/ruff format --check gateway policies sandbox audit insitu tests bench deploy examples

typecheck: $(STAMP)
	$(BIN)/mypy

# Parallel over every core (pytest-xdist); tests that must share state say so with
# @pytest.mark.xdist_group, which --dist loadgroup keeps on one worker.
PYTEST := $(BIN)/python -m pytest -n auto --dist loadgroup --durations=20
# The fast tier: no test marked slow (> 2 s on the 2-core machine), SQLite only.
# FAST and REST are complements: together they run every test exactly once.
FAST := not slow and not postgres
REST := slow or postgres

test: lint typecheck
	$(PYTEST) $(PYTEST_ARGS)

test-fast: lint
	$(PYTEST) -m "$(FAST)" $(PYTEST_ARGS)

# What test-fast leaves out (slow tests and the PostgreSQL runs): .ci/run runs test-fast then this.
test-rest: typecheck
	$(PYTEST) -m "$(REST)" $(PYTEST_ARGS)

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

# A Spark Connect server on sc://127.0.0.1:$(SPARK_PORT) from the pyspark wheel's own jars and
# this machine's Java 17 (nothing downloaded), in the background; `make spark-stop` stops it.
# Then: INSITU_ENGINE=spark INSITU_SPARK_REMOTE=sc://127.0.0.1:15002 insitu demo
SPARK_PORT ?= 15002
spark: $(STAMP)
	$(BIN)/python -m deploy.spark_connect start --port $(SPARK_PORT)

spark-stop:
	$(BIN)/python -m deploy.spark_connect stop --port $(SPARK_PORT)

clean:
	rm -rf $(VENV) $(PEERS) .insitu .pytest_cache .mypy_cache .ruff_cache bench/results

# Switch each listed security rule off in a private copy and check the fast tier catches it
# (tests/mutations.py; MUTATE_ARGS=--postgres to run the PostgreSQL cases too).
mutate: $(STAMP)
	$(BIN)/python -m tests.mutations $(MUTATE_ARGS)
