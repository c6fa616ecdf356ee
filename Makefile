# Two entry points (see README): `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTALL_LOG := $(VENV)/install.log

# The installer's output goes to a log, so `make demo` shows the demo; on failure the log's tail.
$(STAMP): pyproject.toml .ci/constraints.txt
	@echo "installing streamcheck into $(VENV) (log: $(INSTALL_LOG))"
	@$(PY) -m venv $(VENV)
	@( $(BIN)/pip install --upgrade pip && \
	   $(BIN)/pip install -e '.[test]' -c .ci/constraints.txt ) > $(INSTALL_LOG) 2>&1 || \
	  (tail -n 30 $(INSTALL_LOG); echo "install failed: see $(INSTALL_LOG)"; exit 1)
	@touch $(STAMP)

.PHONY: demo test lint browser package node
demo: $(STAMP)
	@$(BIN)/streamcheck demo

lint: $(STAMP)
	$(BIN)/ruff check model impl properties tests streamcheck/__init__.py
	$(BIN)/ruff format --check model impl properties tests streamcheck/__init__.py
	$(BIN)/mypy

# The timeline test renders a page in Debian's Chromium; without it that test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)) \
	  >/dev/null 2>&1 || echo "chromium could not be installed: the browser test will be skipped"

# The wheel as a new user installs it: fresh venv, library alone, then the harness extra.
package: $(STAMP)
	@bash .ci/check-package $(BIN)/python

# The Node port's locked dependencies and its type check (tests/test_node_port.py runs it).
node:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then cd ports/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent typecheck; else echo "node or npm is not on PATH: the Node port (ports/node) is skipped"; fi

# Two pytest-xdist workers (the machines have 2 cores; much of the suite waits on real
# time: Redis faults, subprocesses). `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2
test: lint browser package node
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup
