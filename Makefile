# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORK ?= demo

.PHONY: setup demo test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned, when none is installed: an unpinned torch pulls a multi-GB CUDA build
setup: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,ray]"

demo: setup
	bash scripts/demo.sh $(abspath $(BIN)) $(WORK)

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo .pytest_cache
