# The README's commands: `make demo`, `make test` and `make test-postgres`.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-postgres ci

venv: $(STAMP)

# Re-install only when pyproject.toml changes; the install is editable, so code
# changes need nothing.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,postgres]'
	touch $@

demo: venv
	$(VENV)/bin/teleconsult serve --demo

# Everything but the media timing tests runs on one worker per core (pytest-xdist):
# the API, signaling and records tests each on a database of their own, and the
# browser tests that check pages. They spend most of their time waiting (password
# hashing, subprocesses, the database, Chromium). The tests marked `timing` (calls
# whose frames, rates and timings are measured, the media tests, the benchmarks)
# run one at a time afterwards, so a neighbour cannot starve what they measure.
DB_TESTS := tests/web tests/signaling tests/records
WORKERS  := -n auto --maxprocesses=4

test: venv
	$(VENV)/bin/python -m pytest -q $(WORKERS) -m "not timing" tests
	$(VENV)/bin/python -m pytest -q -m timing tests

# The database tests again on a throwaway PostgreSQL cluster that each worker
# starts and stops (tests/pgcluster.py; needs Debian's `postgresql`). Only those
# that use the suite's database: the others (command-line tests on SQLite files
# of their own, parsers, catalogs) ran in `make test` and would run the same.
test-postgres: venv
	TELECONSULT_TEST_DATABASE=postgres $(VENV)/bin/python -m pytest -q $(WORKERS) \
		--database-tests-only $(DB_TESTS)

# What .ci/run runs: the same three passes, arranged for a 2-core machine. The
# two passes that measure nothing (the xdist tier on SQLite and the PostgreSQL
# pass) run side by side: a worker often waits (a subprocess starting, a
# database, Chromium), and the other pass's workers use that time. The timing
# tier still runs alone, after both, with nothing beside it. The PostgreSQL
# pass's output is printed when it is done, not interleaved.
ci: venv
	@log=$$(mktemp); \
	TELECONSULT_TEST_DATABASE=postgres $(VENV)/bin/python -m pytest -q $(WORKERS) \
		--database-tests-only $(DB_TESTS) >$$log 2>&1 & pg=$$!; \
	$(VENV)/bin/python -m pytest -q $(WORKERS) -m "not timing" tests; fast=$$?; \
	wait $$pg; postgres=$$?; \
	echo "==> the PostgreSQL pass (make test-postgres), run beside the tier above"; \
	cat $$log; rm -f $$log; \
	if [ $$fast -ne 0 ] || [ $$postgres -ne 0 ]; then exit 1; fi
	$(VENV)/bin/python -m pytest -q -m timing tests
