# The README's commands: `make demo` and `make test` (`make test-postgres` alone too).
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-sqlite test-postgres

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

# First, on one worker per core (pytest-xdist): everything but the timing tests
# and the tests under DB_TESTS; that is the browser tests that check pages, the
# untimed media and benchmark tests, the tooling (ruff, mypy, import-linter). The
# tests marked `timing` (calls whose frames, rates and timings are measured, the
# media tests, the benchmarks) then run one at a time, so a neighbour cannot
# starve what they measure. Meanwhile, at the lowest CPU priority (nice 19), the
# tests under DB_TESTS run on SQLite (`test-sqlite`: all of them, the command-line
# tests, parsers and catalogs that use no database of the suite included), then
# those that use the database on PostgreSQL (`test-postgres`): the timing tests
# wait for calls in real time and leave about half of two cores idle, which a
# niced process takes without taking it from them. The database passes' output
# follows the timing tests' output; each run ends with its slowest tests
# (--durations). The measurements behind this order are in the README ("Tests
# and benchmarks").
DB_TESTS := tests/web tests/signaling tests/records
WORKERS  := -n auto --maxprocesses=4

test: venv
	$(VENV)/bin/python -m pytest -q $(WORKERS) --durations=12 -m "not timing" \
		$(foreach d,$(DB_TESTS),--ignore=$(d)) tests
	@log=$$(mktemp); \
	( nice -n 19 $(MAKE) -k --no-print-directory test-sqlite test-postgres >"$$log" 2>&1; \
	  echo $$? >"$$log.rc" ) & \
	$(VENV)/bin/python -m pytest -q --durations=25 -m timing tests; timing=$$?; \
	wait; \
	echo "==> make test-sqlite test-postgres (beside the timing tests, at nice 19):"; cat "$$log"; \
	database=$$(cat "$$log.rc"); rm -f "$$log" "$$log.rc"; \
	echo "==> timing tests: exit $$timing; database passes: exit $$database"; \
	test "$$timing" -eq 0 && test "$$database" -eq 0

# Every test under DB_TESTS on SQLite (the embedded default), at the same patience.
test-sqlite: venv
	TELECONSULT_TEST_PATIENCE=$(PATIENCE) $(VENV)/bin/python -m pytest -q $(WORKERS) \
		--durations=12 $(DB_TESTS)

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
