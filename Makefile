# The README's commands: `make demo` and `make test` (`make test-postgres` alone too).
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-postgres

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
# Meanwhile the database tests run again on PostgreSQL (`test-postgres`) at the
# lowest CPU priority (nice 19): the timing tests leave about a third of two
# cores idle (they wait for calls in real time), and a niced process gets a CPU
# only when nothing else wants it. Measured on 2 cores: the timing tests took
# 544 s beside it against 523 s alone, and the PostgreSQL pass (174 s alone)
# cost no wall time of its own. Its output follows the timing tests' output.
# Each run ends with its slowest tests (--durations): where the suite's time goes.
DB_TESTS := tests/web tests/signaling tests/records
WORKERS  := -n auto --maxprocesses=4

test: venv
	$(VENV)/bin/python -m pytest -q $(WORKERS) --durations=12 -m "not timing" tests
	@log=$$(mktemp); \
	( nice -n 19 $(MAKE) --no-print-directory test-postgres >"$$log" 2>&1; \
	  echo $$? >"$$log.rc" ) & \
	$(VENV)/bin/python -m pytest -q --durations=25 -m timing tests; timing=$$?; \
	wait; \
	echo "==> make test-postgres (beside the timing tests, at nice 19):"; cat "$$log"; \
	postgres=$$(cat "$$log.rc"); rm -f "$$log" "$$log.rc"; \
	echo "==> timing tests: exit $$timing; PostgreSQL pass: exit $$postgres"; \
	test "$$timing" -eq 0 && test "$$postgres" -eq 0

# The database tests again on a throwaway PostgreSQL cluster that each worker
# starts and stops (tests/pgcluster.py; needs Debian's `postgresql`). Only those
# that use the suite's database: the others (command-line tests on SQLite files
# of their own, parsers, catalogs) ran in `make test` and would run the same.
# Beside the timing tests at nice 19 it can go without a CPU for seconds, so its
# waits for a pushed message or a closed socket are stretched (tests/patience.py):
# a wait bounds a hang and measures nothing (`make test-postgres PATIENCE=1`: plain waits).
# 3 was not enough once on CI (stop 39: a 5 s wait stretched to 15 s, for a push
# that alone is there at once); a passing run waits no longer for 5.
PATIENCE := 5
test-postgres: venv
	TELECONSULT_TEST_DATABASE=postgres TELECONSULT_TEST_PATIENCE=$(PATIENCE) \
		$(VENV)/bin/python -m pytest -q $(WORKERS) \
		--database-tests-only $(DB_TESTS)
