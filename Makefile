# Two commands on a fresh machine:
#   make demo   runs the four vendor emulators, syncs a week from each into
#               ./meterhub-demo.duckdb and prints a tour (meterhub demo)
#   make test   lint, type-check and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean

$(BIN)/meterhub: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/meterhub

demo: install
	$(BIN)/meterhub demo

# tests/dashboard drive Debian's chromium through playwright (never a browser build of
# playwright's own); installed here when missing (CI runs as root, a developer through sudo)
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium fonts-liberation

test: install $(CHROMIUM)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	# bytecode caches on (some shells turn them off): the tests start dozens of meterhub
	# processes, and each would compile the package again (a third of its start-up)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest

bench: install $(CHROMIUM)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/api.py   # load figures need wrk (apt-get install wrk)
	$(BIN)/python bench/dsmr.py
	$(BIN)/python bench/push_memory.py   # prints; BENCHMARKS.md keeps the before/after by hand
	$(BIN)/python bench/soak.py   # 10 minutes of real time
	$(BIN)/python bench/dashboard.py --screenshots docs   # needs chromium, as make test

clean:
	rm -rf $(VENV) meterhub-sample.duckdb
