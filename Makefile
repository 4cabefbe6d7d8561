# The two commands of the README:  `make demo`  and  `make test`.
# Both create .venv and install everything on first use (CPU torch first where there is no GPU).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_CPU ?= torch==2.13.0

.PHONY: setup browser demo test bench-detection soak clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# No GPU: install the CPU build of torch first, so that the dependency on torch
	# does not pull a multi-GB CUDA build.
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/python -m pip install -q "$(TORCH_CPU)" || \
	  $(BIN)/python -m pip install -q "$(TORCH_CPU)" --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/lineage demo --home $(VENV)/demo-home

# tests/test_report.py renders a report in headless Chromium: install it when it is missing
# and apt-get is there (as root, or through sudo); a no-op once installed.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; \
	  else \
	    echo "no chromium and no apt-get: install a headless Chromium for tests/test_report.py"; \
	  fi; \
	fi

test: setup browser
	$(BIN)/python -m pytest -q tests

bench-detection: setup
	$(BIN)/python benchmarks/detection.py --zoo .cache/zoo-full --access full

# Not part of CI: 30 minutes, 64 clients (MINUTES=3 for a short run).
MINUTES ?= 30
soak: setup
	$(BIN)/python benchmarks/soak.py --zoo $$(ls -d .cache/zoo-small-* | head -1) --minutes $(MINUTES)

clean-venv:
	rm -rf $(VENV)
