# Two commands for a fresh machine:
#   make demo   trains, fits and reports on the built-in synthetic world (creates .venv first)
#   make test   runs the test suite (creates .venv first)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/atlas demo --out report

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f --json || exit 1; done

clean:
	rm -rf $(VENV) report .pytest_cache
