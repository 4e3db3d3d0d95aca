# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
RECSYS := $(VENV)/bin/recsys
# torch is pinned and installed first: the CPU wheel lies on disk here, and any looser
# requirement would make pip download a multi-GB CUDA build.
TORCH ?= torch==2.13.0
DEMO_DB ?= sqlite:///./var/demo.db
PORT ?= 8000
# Test processes (pytest-xdist): most tests wait on servers, browsers and databases, and one
# process kept a core of two idle (the suite took 8.0 min on the 2-core VM, 5.2 with two). A
# module's tests run in one process, so its fixtures (trained models, servers) are built once.
# TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2

.PHONY: venv demo test lint postgres browser bare clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev,demo]'
	touch $@

# The demo's operator token is printed and fixed: a laptop demo, not a deployment.
DEMO_TOKEN ?= demo-operator-token
# Development mode: writes need no client key and the well-known token is accepted.
DEMO_ENV = RECSYS_DATABASE_URL=$(DEMO_DB) RECSYS_OPERATOR_TOKEN=$(DEMO_TOKEN) RECSYS_DEV_MODE=true RECSYS_EXPLORE_SHARE=0.1

demo: venv
	$(DEMO_ENV) $(RECSYS) db upgrade
	$(DEMO_ENV) $(RECSYS) load-sample movielens --hold-out var/held-out.csv
	$(DEMO_ENV) $(RECSYS) train
	$(DEMO_ENV) $(RECSYS) inspect --item 1
	@# Serve, then play a few rounds of users against the service, retrain in between (a new
	@# version goes live by hot reload), play again: the dashboard shows the loop.
	$(DEMO_ENV) $(RECSYS) serve --host 0.0.0.0 --port $(PORT) --log-level warning & server=$$!; \
	trap 'kill $$server 2>/dev/null' INT TERM EXIT; \
	until $(PY) -c 'import httpx, sys; sys.exit(httpx.get("http://127.0.0.1:$(PORT)/readyz").status_code != 200)' 2>/dev/null; do sleep 1; done; \
	$(DEMO_ENV) $(RECSYS) simulate-traffic --url http://127.0.0.1:$(PORT) --held-out var/held-out.csv --rounds 3 --pause 5 && \
	$(DEMO_ENV) $(RECSYS) retrain && sleep 6 && \
	$(DEMO_ENV) $(RECSYS) simulate-traffic --url http://127.0.0.1:$(PORT) --held-out var/held-out.csv --rounds 3 --pause 5 && \
	echo && echo "API docs:   http://localhost:$(PORT)/docs" && \
	echo "Dashboard:  http://localhost:$(PORT)/dashboard  (operator token: $(DEMO_TOKEN))" && \
	echo "Development mode (RECSYS_DEV_MODE=true): writes need no key; not for production." && \
	echo "Ctrl-C stops the server." && wait $$server

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check recsys service tests benchmarks
	$(VENV)/bin/mypy recsys service tests benchmarks

# Start the local PostgreSQL cluster if it is installed but not running.
postgres:
	@if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then \
	  pg_isready -q -h 127.0.0.1 -p 5432 || \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; \
	else echo "PostgreSQL is not installed here: its tests will skip"; fi

# Dashboard tests drive Debian's Chromium (Playwright's own browser download is never used).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the dashboard tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null || \
	  { $$SUDO apt-get update >/dev/null && \
	    $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; }; }

test: venv postgres browser lint bare
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadscope

# The package as the Dockerfile installs it (editable, no extras), in a venv of its own (no dev tools to
# hide a missing runtime dependency). Its commands and the app must import.
BARE ?= .venv-bare
bare: $(BARE)/.installed
	$(BARE)/bin/recsys --help >/dev/null
	$(BARE)/bin/recsys serve --help >/dev/null
	$(BARE)/bin/recsys simulate-traffic --help >/dev/null
	$(BARE)/bin/python -c "import service.app"
	RECSYS_DATABASE_URL=sqlite:///$(BARE)/check.db $(BARE)/bin/recsys db upgrade >/dev/null
	@echo "bare install: recsys and service.app import without extras"

$(BARE)/.installed: pyproject.toml
	rm -rf $(BARE) && python3 -m venv $(BARE)
	$(BARE)/bin/pip install --quiet $(TORCH)
	$(BARE)/bin/pip install --quiet -e .
	touch $@

clean:
	rm -rf $(VENV) $(BARE) var test-output
