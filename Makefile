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

.PHONY: demo test lint
demo: $(STAMP)
	$(BIN)/streamcheck demo

lint: $(STAMP)
	$(BIN)/ruff check model impl properties tests
	$(BIN)/ruff format --check model impl properties tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q
