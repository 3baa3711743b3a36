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

test: venv
	$(VENV)/bin/python -m pytest -q

# The tests that touch the database, on a throwaway PostgreSQL cluster that the test
# session starts and stops (tests/pgcluster.py; needs Debian's `postgresql`).
PG_TESTS := tests/web tests/signaling tests/records

test-postgres: venv
	TELECONSULT_TEST_DATABASE=postgres $(VENV)/bin/python -m pytest -q $(PG_TESTS)
