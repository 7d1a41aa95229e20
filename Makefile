# One obvious command per job. Every target builds its own virtualenv first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test unit e2e demo bench clean

venv: $(STAMP)

$(STAMP): tests/requirements.txt tests/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/requirements.txt -c tests/constraints.txt \
	  2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $@

## test: every test (unit, simulator, end to end through ansible-playbook)
test: venv
	$(BIN)/python -m pytest tests

unit: venv
	$(BIN)/python -m pytest tests/unit

e2e: venv
	$(BIN)/python -m pytest tests/e2e

## demo: a simulated fleet: audit, remediate, audit again, reports
demo: venv
	$(BIN)/python -m tests.demo

## bench: speed and memory against the simulator
bench: venv
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) tests/output .pytest_cache .coverage htmlcov demo-output
