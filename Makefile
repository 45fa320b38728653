# Two commands: `make demo` (the main job) and `make test` (the whole test suite).
# Both create .venv themselves. torch==2.13.0 goes first (an unpinned torch pulls CUDA wheels); the project is
# installed under constraints.txt; torchvision is removed (lmms-eval pulls a CUDA build that breaks
# transformers' AutoProcessor import on CPU torch).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.icu-installed

.PHONY: install demo test lint

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -m pip uninstall -y -q torchvision || true
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icu-bench demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
