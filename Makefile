# One obvious command per job. Every target builds its own virtualenv first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test unit e2e demo bench sanity lint matrix real-host clean
.PHONY: publish docsite

venv: $(STAMP)

$(STAMP): tests/requirements.txt tests/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/requirements.txt -c tests/constraints.txt \
	  2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $@

## test: every test: unit, simulator, end to end through ansible-playbook,
## molecule, report in a browser, packaging; then sanity and lint; then the
## same core tests on the newest ansible-core.
test: venv
	bash tests/e2e/ensure_chromium.sh
	bash tests/e2e/ensure_ssh.sh
	$(BIN)/python -m pytest --cov --cov-report=term-missing tests
	tests/run_sanity.sh all
	tests/matrix.sh

unit: venv
	$(BIN)/python -m pytest --cov --cov-report=term-missing tests/unit

e2e: venv
	bash tests/e2e/ensure_chromium.sh
	bash tests/e2e/ensure_ssh.sh
	$(BIN)/python -m pytest tests/e2e

## sanity: ansible-test sanity + ruff + mypy + ansible-lint (offline)
sanity: venv
	tests/run_sanity.sh all

## lint: only the fast linters
lint: venv
	tests/run_sanity.sh ruff && tests/run_sanity.sh mypy && tests/run_sanity.sh ansible-lint

## matrix: unit, core end to end and the installed-tarball smoke on the newest ansible-core
matrix:
	bash tests/e2e/ensure_ssh.sh
	tests/matrix.sh

## publish: what Galaxy, Automation Hub, the docsite and AWX run on the
## collection: galaxy-importer, antsibull-docs, ansible-builder, ansible-lint
## on a user's playbook, ansible-runner and job slicing (.venv-publish is
## built on first use; `make test` runs these too)
publish: venv
	$(BIN)/python -m pytest tests/ecosystem

## docsite: rewrite docs/docsite/rst/ from docs/*.md after editing a guide
docsite: venv
	$(BIN)/python -m tests.ecosystem.publish

## real-host: the integration targets on your own Windows hosts, the [windows]
## group of INVENTORY (INI): ansible-test windows-integration --inventory.
## Exercises one virtual server per host and puts it back (docs/getting-started.md).
real-host: venv
	@test -n "$(INVENTORY)" || { echo "usage: make real-host INVENTORY=path/to/inventory.ini" >&2; exit 2; }
	tests/integration/run.sh "$(INVENTORY)"

## demo: a simulated fleet: audit, remediate, audit again, reports
demo: venv
	$(BIN)/python -m tests.demo

## bench: speed and memory against the simulator
bench: venv
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-sanity .venv-core-latest tests/output .pytest_cache .coverage htmlcov \
	  demo-output bench-output iis_smtp_report
	rm -rf .venv-publish
