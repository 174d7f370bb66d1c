# sipd: `make demo` and `make test` each set up what they need first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test test-fast demo proto lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml client/pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ./client -e '.[dev,ray]'
	touch $(STAMP)

# Lint, the generated-code check (inside pytest) and the whole suite (what CI runs); the
# slowest tests are listed at the end.
test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q --durations=15

# Lint and the tests not marked slow: every package, about 5 minutes on two cores.
test-fast: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow" --durations=15

# sipd on embedded defaults plus the full label -> train -> test -> predict example.
demo: install
	$(PY) -m sipd.demo

proto: install
	$(PY) proto/generate.py

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(VENV)/bin/sipctl bench

clean:
	rm -rf $(VENV) demo-data bench-data .pytest_cache .ruff_cache
