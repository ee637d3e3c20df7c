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

# the ClickHouse tests start Debian's clickhouse-server (throw-away configs, loopback ports:
# tests/clickhouse_servers.py), installed here when missing; with tzdata, which the package does
# not pull in but its servers read for their (non-UTC) zones. The package's postinst starts its
# service: where a policy-rc.d forbids that (containers, CI) apt-get still exits 0; elsewhere, if
# that service fails to start, apt-get fails with the binary in place, all the tests need
CLICKHOUSE := /usr/sbin/clickhouse-server

$(CLICKHOUSE):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		clickhouse-server tzdata \
		|| { test -x $@ && echo "clickhouse-server installed; its service did not start (not needed)"; }

# the MQTT tests start Debian's mosquitto (a throw-away config on a loopback port:
# tests/mqtt/conftest.py), installed here when missing; as with ClickHouse, its service may
# fail to start where services may not, with the binary in place
MOSQUITTO := /usr/sbin/mosquitto

$(MOSQUITTO):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		mosquitto || { test -x $@ && echo "mosquitto installed; its service did not start (not needed)"; }

test: install $(CHROMIUM) $(CLICKHOUSE) $(MOSQUITTO)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy
	# bytecode caches on (some shells turn them off): the tests start dozens of meterhub
	# processes, and each would compile the package again (a third of its start-up)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest

bench: install $(CHROMIUM) $(CLICKHOUSE)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/api.py   # load figures need wrk (apt-get install wrk)
	$(BIN)/python bench/profile_reads.py   # wrk, and py-spy (a dev dependency)
	$(BIN)/python bench/scale.py   # 1 M to 300 M readings: about 15 minutes, 5 GB of disk
	$(BIN)/python bench/dsmr.py
	$(BIN)/python bench/push_memory.py   # prints; BENCHMARKS.md keeps the before/after by hand
	$(BIN)/python bench/soak.py   # 10 minutes of real time
	$(BIN)/python bench/dashboard.py --screenshots docs   # needs chromium, as make test

clean:
	rm -rf $(VENV) meterhub-sample.duckdb
