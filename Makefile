# radstream — the two set-up commands are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV = $(shell scripts/venv.sh)
PY = PYTHONPATH=$(CURDIR) $(VENV)/bin/python
RS = $(PY) -m radstream

.PHONY: venv demo test test-unit test-integration stack-up stack-down stack-status lint typecheck bench

venv:
	@scripts/venv.sh

demo: venv
	$(RS) demo

test: venv
	$(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q -m "not integration" tests

test-integration: venv
	$(PY) -m pytest -q -m integration tests

stack-up: venv
	$(RS) stack up

stack-down: venv
	$(RS) stack down

stack-status: venv
	$(RS) stack status

lint: venv
	$(VENV)/bin/ruff check radstream streams processors sinks schemas tests bench
	$(VENV)/bin/mypy

bench: venv
	for b in bench/*.py; do $(PY) $$b || exit 1; done
