# The two commands of the README: `make demo` and `make test`. Both set up a fresh machine first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NPM_TOOLS := tools/node_modules/.installed

.PHONY: setup nginx redis demo cluster-demo test lint typecheck pytest bench clean

setup: $(VENV)/.installed $(NPM_TOOLS) nginx redis

# nginx for the passthrough tests and benchmark (Debian's package; the tests run it on loopback
# with a temp prefix, never /etc/nginx or port 80; RUNLEVEL=1 keeps the package from starting one).
nginx:
	command -v nginx >/dev/null || (apt-get update && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y nginx)

# redis-server for the replica tests (tests/cluster start their own on loopback, a free port and a temp
# dir, nothing saved); RUNLEVEL=1 keeps the package from starting one, and the stop ends one that started anyway.
redis:
	command -v redis-server >/dev/null || (apt-get update && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server \
		&& (service redis-server stop >/dev/null 2>&1 || true))

# torch first, with pip, from the CPU wheel on local disk: anything else pulls gigabytes of CUDA. The rest
# with uv, which keeps that torch and installs the same packages as pip in a sixth of the time (15 s vs 95 s).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0 uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]'
	touch $@

# Node 22, the conformance suite and the public npm MCP servers/clients the tests use.
$(NPM_TOOLS): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo.sh

# Three replicas sharing one redis-server, behind nginx, with the demo upstreams; Ctrl-C stops them all.
cluster-demo: $(VENV)/.installed nginx redis
	PATH="$(CURDIR)/$(BIN):$$PATH" examples/cluster/run.sh

# mypy (one core, about two minutes) runs beside the tests, which leave a core idle much of the time.
test: setup lint
	$(MAKE) --no-print-directory -j2 typecheck pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# The venv's bin first on PATH: tests launch its console scripts (mcp-server-time) as stdio upstreams.
pytest: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) tools/node_modules .mypy_cache .ruff_cache .pytest_cache
