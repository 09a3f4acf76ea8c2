# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
DATA   ?= .eventgate
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "eventgate needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)  ## start the full system on embedded defaults
	$(BIN)/eventgate up --data $(DATA)

test: $(STAMP)  ## every test
	$(BIN)/python -m pytest

check: $(STAMP)  ## format, lint and type checks
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(STAMP)  ## the benchmarks under bench/ (http_load.py needs wrk, hub.py nats-server: apt-get install wrk nats-server)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/functions.py
	$(BIN)/python bench/hub.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/http_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
