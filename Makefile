# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: demo test lint browser
demo: $(STAMP)
	$(BIN)/streamcheck demo

lint: $(STAMP)
	$(BIN)/ruff check model impl properties tests
	$(BIN)/ruff format --check model impl properties tests
	$(BIN)/mypy

# The timeline test renders a page in Debian's Chromium; without it that test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)) \
	  >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will be skipped"

test: lint browser
	$(BIN)/pytest -q
