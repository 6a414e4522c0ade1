# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: run test faults lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "triggerd needs Python 3.11 or newer (PYTHON=$(PYTHON) is older)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# The newest releases the pins allow, every dependency's too (eager): a dependency's
	# breaking release fails here the day it is out, not on a user's machine first.
	$(VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	@touch $@

# The main job on the embedded default: the daemon, watching var/incoming/ with the
# example rule triggers/incoming.toml (workflow workflows/file_info.py). Ctrl-C stops it.
run: $(STAMP)
	@mkdir -p var/incoming
	@echo "triggerd: drop a file into var/incoming/, then: $(VENV)/bin/triggerctl runs"
	$(VENV)/bin/triggerd run

# The whole test suite, as CI runs it (it needs redis-server: installed if missing).
test: $(STAMP)
	@bash .ci/ensure-redis-server
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# The fault suite at full load and outage length (tests/faults, about 15 minutes): each
# scenario's outcome goes into the table of docs/reliability.md. `make test` runs the
# same scenarios shorter. FAULTS_ARGS picks some, e.g. FAULTS_ARGS='-k redis'.
faults: $(STAMP)
	@bash .ci/ensure-redis-server
	@mkdir -p var && rm -f var/faults.jsonl
	TRIGGERD_FAULTS=full TRIGGERD_FAULTS_REPORT=$(CURDIR)/var/faults.jsonl \
		$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/faults \
			tests/eventlog/test_forwarder.py::test_mongodb_down_loses_and_doubles_nothing \
			tests/daemon/test_reload_stream.py $(FAULTS_ARGS); \
		status=$$?; \
		if [ -s var/faults.jsonl ]; then $(VENV)/bin/python tests/faults/report.py var/faults.jsonl docs/reliability.md; fi; \
		exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check triggerd tests workflows benchmarks
	$(VENV)/bin/ruff format --check triggerd tests workflows benchmarks
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/local_executor.py

clean:
	rm -rf $(VENV) var .pytest_cache
