# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: venv demo test

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
