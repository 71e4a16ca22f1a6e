# Two commands do all the set-up on a fresh Debian/Ubuntu machine with Python 3.11 or 3.12:
#   make demo   creates .venv, installs volcast, runs the demo on bundled real recordings
#   make test   creates .venv, installs the dev extras, runs the whole test suite
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-deps bench install clean

$(STAMP): pyproject.toml setup.py connectors/book/_l2fast.pyx
	@test -n "$(PYTHON)" || { echo "volcast needs Python 3.11 or 3.12 (bytewax 0.21.1 has no wheels for newer)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip setuptools wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# the surface engine's numba kernels, compiled once into their on-disk cache (about 20 s)
	$(BIN)/python -c 'import model.surface; model.surface.precompile()'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/volcast demo

# The sink tests start real redis-server and nats-server on loopback (Debian packages).
TOOLS := .tools
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-deps:
	@command -v redis-server >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y redis-server; }
	@command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y nats-server; }
# tests/dashboards: a real Prometheus scrapes the demo; promtool checks the alert rules.
	@command -v prometheus >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
# tests/connectors/test_ethereum_anvil.py: a real Ethereum dev node (npm @foundry-rs/anvil, local to the repo).
	@test -x $(TOOLS)/node_modules/.bin/anvil || npm install --silent --no-audit --no-fund --prefix $(TOOLS) @foundry-rs/anvil

test: $(STAMP) test-deps
	PATH="$(CURDIR)/$(TOOLS)/node_modules/.bin:$$PATH" $(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules connectors model flows tests

bench: $(STAMP)
	$(BIN)/volcast bench

clean:
	rm -rf $(VENV) build *.egg-info
