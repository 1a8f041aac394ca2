# radstream — the two set-up commands are `make demo` and `make test` (see README).
SHELL := /bin/bash
VENV = $(shell scripts/venv.sh)
PY = PYTHONPATH=$(CURDIR) $(VENV)/bin/python
RS = $(PY) -m radstream
# the tests also run the [ml] extra (transformers/torch, ~7 GB venv, built once): `make test ML=0` skips it
ML ?= 1
TEST_VENV = $(shell RADSTREAM_ML=$(ML) scripts/venv.sh)
TEST_PY = PYTHONPATH=$(CURDIR) $(TEST_VENV)/bin/python

.PHONY: venv demo test layers test-unit test-integration stack-up stack-down stack-status lint typecheck bench

venv:
	@scripts/venv.sh

demo: venv
	$(RS) demo

# The suite runs in four pytest processes side by side: each starts its own broker and Orthanc on free
# ports, and most of a test's time is spent waiting on them (the three processes of before: ~1,000 CPU-s
# in ~19 min on an idle 2-core host, its cores under half busy), so two cores take four. The wall time is
# the slowest process's: the groups below are sized to end together (`pytest --durations`). The output of
# the three in the background follows the foreground's.
# - The tests that make DICOM associations in the pytest process (an in-process storage SCP; Orthanc's
#   readiness C-ECHO in the browser tests) run in a process of their own, as the DICOM processes do in
#   production. A long-running pytest process collects open descriptors (650 midway: shared libraries
#   held open, /proc files of the embedded ClickHouse's threads, pipes), and pynetdicom checks its
#   sockets with select(), which fails for a descriptor number of 1024 or more: every association of
#   that process then aborts. On an idle host it is the last to end (the DICOM tests alone).
# - Brokers killed and started (recovery, the 3-broker cluster, SASL, the stack commands), the ingest
#   front doors and the sink tests of whole worker processes (SQL CLI, access) in a second.
# - The other tests of tests/radstream (whole processes: workers, a Prometheus server, the CLI) and the
#   stream tests that run a worker process, in a third.
# - The rest in the foreground.
DICOM_TESTS = tests/sinks/dicom tests/streams/test_textdeid_dates_e2e.py tests/radstream/web/test_web_browser.py
BROKER_TESTS = tests/radstream/test_recovery.py tests/radstream/test_multibroker.py \
  tests/radstream/test_nlp_scale_out.py tests/radstream/test_kafka_sasl.py tests/radstream/stack \
  tests/radstream/test_stack.py tests/streams/ingest tests/sinks/clickhouse/test_access_worker.py \
  tests/sinks/clickhouse/test_sql_cli.py
WORKER_STREAM_TESTS = tests/streams/test_worker.py tests/streams/test_worker_pipeline.py \
  tests/streams/test_cohort_stream.py
PROCESS_TESTS = tests/radstream $(WORKER_STREAM_TESTS) $(addprefix --ignore=,tests/radstream/web/test_web_browser.py \
  $(filter tests/radstream/%,$(BROKER_TESTS)))
REST_TESTS = tests --ignore=tests/radstream $(addprefix --ignore=,$(DICOM_TESTS) $(BROKER_TESTS) $(WORKER_STREAM_TESTS))

test: compose-plugin layers
	@dl=$$(mktemp); bl=$$(mktemp); pl=$$(mktemp); trap 'kill $$dicom $$brokers $$procs 2>/dev/null; rm -f $$dl $$bl $$pl' EXIT; \
	$(TEST_PY) -m pytest -q -p no:cacheprovider $(DICOM_TESTS) > $$dl 2>&1 & dicom=$$!; \
	$(TEST_PY) -m pytest -q -p no:cacheprovider $(BROKER_TESTS) > $$bl 2>&1 & brokers=$$!; \
	$(TEST_PY) -m pytest -q -p no:cacheprovider $(PROCESS_TESTS) > $$pl 2>&1 & procs=$$!; \
	$(TEST_PY) -m pytest -q $(REST_TESTS); rest=$$?; \
	wait $$procs; procs_rc=$$?; wait $$brokers; brokers_rc=$$?; wait $$dicom; dicom_rc=$$?; \
	echo "--- $(PROCESS_TESTS):"; cat $$pl; echo "--- $(BROKER_TESTS):"; cat $$bl; \
	echo "--- $(DICOM_TESTS):"; cat $$dl; \
	exit $$(( rest != 0 || procs_rc != 0 || brokers_rc != 0 || dicom_rc != 0 ))

# the floors of the data path (pyproject.toml [tool.importlinter]): a floor imports only the floors below
layers:
	cd $(CURDIR) && PYTHONPATH=$(CURDIR) $(TEST_VENV)/bin/lint-imports

test-unit:
	$(TEST_PY) -m pytest -q -m "not integration" tests

test-integration:  # the DICOM part in a process of its own, as in `test`
	$(TEST_PY) -m pytest -q -m integration tests $(addprefix --ignore=,$(DICOM_TESTS))
	$(TEST_PY) -m pytest -q -m integration $(DICOM_TESTS)

stack-up: venv
	$(RS) stack up

stack-down: venv
	$(RS) stack down

stack-status: venv
	$(RS) stack status

lint: venv
	$(VENV)/bin/ruff check radstream streams processors sinks schemas tests bench
	$(VENV)/bin/mypy
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports

bench: venv
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# `docker compose config` without a Docker engine: the compose CLI plugin, built once from the Go module
# proxy into ~/.cache/radstream/go-bin (a machine without the docker CLI or Go skips the check, and says so)
compose-plugin:
	@if ! command -v docker >/dev/null || ! command -v go >/dev/null; then \
	  echo "radstream: no docker CLI or Go here: docker-compose.yml is not checked"; exit 0; fi; \
	docker compose version >/dev/null 2>&1 || { \
	  echo "radstream: building the docker compose plugin (once)" >&2; \
	  GOBIN=$$HOME/.cache/radstream/go-bin go install github.com/docker/compose/v2/cmd@v2.32.4 >&2 && \
	  mkdir -p $$HOME/.docker/cli-plugins && \
	  cp $$HOME/.cache/radstream/go-bin/cmd $$HOME/.docker/cli-plugins/docker-compose; }; \
	docker compose config --quiet
