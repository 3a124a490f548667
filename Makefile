# Two entry points that work on a fresh machine with Python 3.11:
#   make demo   -> creates .venv, installs tfxai, runs `tfxai demo` (offline)
#   make test   -> creates .venv, installs tfxai with test extras, runs the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean bench

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfxai demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check tfxai cli tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/methods.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
