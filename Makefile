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

.PHONY: venv demo test lint postgres browser clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev,demo]'
	touch $@

demo: venv
	RECSYS_DATABASE_URL=$(DEMO_DB) $(RECSYS) db upgrade
	RECSYS_DATABASE_URL=$(DEMO_DB) $(RECSYS) load-sample movielens
	RECSYS_DATABASE_URL=$(DEMO_DB) $(RECSYS) train
	RECSYS_DATABASE_URL=$(DEMO_DB) $(RECSYS) inspect --item 1
	RECSYS_DATABASE_URL=$(DEMO_DB) $(RECSYS) serve --host 0.0.0.0 --port $(PORT)

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

test: venv postgres lint
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) var test-output
