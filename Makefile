# Two entry points for a fresh clone: `make run` (set up + serve the app) and `make test` (set up + run the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PORT ?= 8501
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
# Offline machines of this project keep the real data beside the checkout; elsewhere data comes from TANAS_DATA_DIR,
# $TANAS_HOME/data or torchvision's download.
SHARED_DATA := $(abspath ../shared/datasets)
ifeq ($(TANAS_DATA_DIR),)
ifneq ($(wildcard $(SHARED_DATA)/mnist.npz),)
export TANAS_DATA_DIR := $(SHARED_DATA)
endif
endif

.PHONY: setup run test test-unit test-under-load bench-zoo clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: setup
	$(VENV)/bin/python -m pytest -q -rs tests

# The math, requests, registries and the code's shape: under a minute, no training on real data, no server.
test-unit: setup
	$(VENV)/bin/python -m pytest -q -rs -m unit tests

# The whole suite beside one busy process per core, as on a shared lab machine: no test may depend on an idle machine.
test-under-load: setup
	$(VENV)/bin/python -m pytest -q -rs --busy $(shell nproc) tests

bench-zoo: setup
	$(VENV)/bin/python -m tanas_core bench zoo --suite ld8 --seeds 1 --preset demo

clean:
	rm -rf $(VENV)
