# The two commands a newcomer needs: `make up` and `make test`. Both set up what is
# missing first (uv, the virtualenv, nginx, keys, databases), so a fresh clone needs
# nothing else on a machine with PostgreSQL, RabbitMQ and Redis running.

SHELL := /bin/bash
UV_VERSION := 0.13.9
TOOLS := .tools
# uv must use the machine's Python 3.11; it cannot download interpreters here.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
PY := .venv/bin/python

.PHONY: up down test lint format setup sync sync-runtime clean help bench demo bench-load

help:
	@echo "make up     set up and run the whole system on http://127.0.0.1:$${GATEWAY_PORT:-8080}"
	@echo "make down   stop the PostgreSQL, RabbitMQ and Redis that make up started"
	@echo "make test   set up and run every test suite"
	@echo "make lint   ruff lint + format check"
	@echo "make demo   add demo users and tickets to the running system (after make up)"
	@echo "make setup  keys, databases, migrations only"
	@echo "make bench  run the benchmarks in bench/ (printed figures beside ceilings)"
	@echo "make bench-load  the whole journey under Locust; summary + chart in var/bench/load/"

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# One virtualenv, synced at two levels, each with its stamp. Running the system needs only
# the workspace packages and the `local` group (localstripe); tests, linters and benchmarks
# need the `dev` group too (~670 MB more: Playwright, Locust, matplotlib, the linters).
# The runtime sync is --inexact, so after a full sync it leaves the dev tools in place and
# the two work in either order; the full sync is exact and covers the runtime level too.
.venv/.synced-runtime: uv.lock pyproject.toml */pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages --no-default-groups --group local --inexact
	@touch $@

.venv/.synced-dev: uv.lock pyproject.toml */pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages --all-groups
	@touch $@ .venv/.synced-runtime

sync-runtime: .venv/.synced-runtime

sync: .venv/.synced-dev

up: sync-runtime
	$(PY) -m ticketing_devtools.cli up

down: sync-runtime
	$(PY) -m ticketing_devtools.cli down

test: sync
	$(PY) -m ticketing_devtools.cli test

demo: sync-runtime
	$(PY) -m ticketing_devtools.cli demo

setup: sync-runtime
	$(PY) -m ticketing_devtools.cli setup

# Each prints its figures beside a ceiling measured in the same run; see bench/README.md.
bench: sync setup
	$(PY) bench/events.py
	$(PY) bench/http_api.py
	$(PY) bench/expiry.py
	$(PY) bench/load.py

# The whole journey (sign up, browse, sell, buy, pay) under Locust, headless, ~2 min; it
# exits non-zero on any error. Summary, chart and Locust's log go to var/bench/load/.
bench-load: sync setup
	$(PY) bench/load.py

lint: sync
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: sync
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

clean:
	rm -rf .venv var */staticfiles
