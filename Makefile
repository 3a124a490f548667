# Two entry points that work on a fresh machine with Python 3.11, 3.12 or 3.13:
#   make demo   -> creates .venv, installs tfxai, runs `tfxai demo` (offline)
#   make test   -> creates .venv, installs tfxai with test extras, runs the test suite
# The newest Python 3.11-3.13 found on PATH is used; override with PYTHON=/path/to/python3.x.
PY_CANDIDATES := python3.13 python3.12 python3.11 python3
PYTHON ?= $(shell for p in $(PY_CANDIDATES); do \
	  $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' \
	  >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint venv clean bench

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "need Python 3.11, 3.12 or 3.13 on PATH (or PYTHON=...)"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' \
	  || { echo "$(PYTHON) is not Python 3.11-3.13"; exit 2; }
	@echo "using $$($(PYTHON) --version) ($(PYTHON))"
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e .
	@touch $(STAMP)

# The test extras, plus the optional innvestigate reference (Keras 2 = tf_keras of the installed
# TensorFlow's version, in a child process) so that the comparisons with innvestigate run.
# innvestigate 2.1.2 declares TF < 2.15 and Python < 3.12 but runs under tf_keras: installed
# without its dependencies, it never touches the main environment.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	TF_MINOR=$$($(BIN)/python -c 'import tensorflow as tf; print(".".join(tf.__version__.split(".")[:2]))' 2>/dev/null) \
	  && $(BIN)/pip install -q -c constraints.txt "tf_keras~=$$TF_MINOR.0"
	$(BIN)/pip install -q --no-deps --ignore-requires-python innvestigate==2.1.2
	@touch $(TEST_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfxai demo

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check tfxai cli tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/methods.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
