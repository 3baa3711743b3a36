# The README's commands: `make demo`, `make test` and `make test-postgres`.
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

# The tests that touch the database: API, signaling and records, each test on a
# database of its own. They spend most of their time waiting (password hashing,
# subprocesses, the database), so they run on one worker per core (pytest-xdist);
# the browser, media and benchmark tests, which measure frames and timings, run
# one at a time afterwards.
DB_TESTS := tests/web tests/signaling tests/records
WORKERS  := -n auto --maxprocesses=4

test: venv
	$(VENV)/bin/python -m pytest -q $(WORKERS) $(DB_TESTS)
	$(VENV)/bin/python -m pytest -q $(addprefix --ignore=,$(DB_TESTS))

# The database tests again on a throwaway PostgreSQL cluster that each worker
# starts and stops (tests/pgcluster.py; needs Debian's `postgresql`).
test-postgres: venv
	TELECONSULT_TEST_DATABASE=postgres $(VENV)/bin/python -m pytest -q $(WORKERS) $(DB_TESTS)
