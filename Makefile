# Two commands do all the set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run demo test lint audit fuzz bench bench-scale bench-retention bench-sigkill bench-history bench-waiting clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/relay serve --config relay.toml

# relay + two example targets + the seed push, walking its chain live; Ctrl-C stops all.
demo: $(STAMP)
	$(BIN)/python demo/run.py

test: lint audit
	$(BIN)/pytest -q --durations=5

lint: $(STAMP)
	$(BIN)/ruff check relay tests bench demo tools
	$(BIN)/mypy
	$(BIN)/python tools/imports.py

# Known vulnerabilities in the installed dependencies; skips, saying so, when offline.
audit: $(STAMP)
	$(BIN)/python tools/audit.py

# The fuzzing tests with a large budget (make test runs them with a small one).
fuzz: $(STAMP)
	RELAY_FUZZ=1 $(BIN)/pytest -q --durations=5 tests/e2e/test_fuzz.py tests/e2e/test_openapi.py

# Each benchmark measures a bare aiohttp baseline in the same run and prints the ratio.
bench: $(STAMP)
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/delivery.py

# Intake with [history] retention pruning beside without, and the store's size over time.
bench-retention: $(STAMP)
	$(BIN)/python bench/retention.py

# 1, 2 and 3 processes on PostgreSQL (127.0.0.1:5432, database test) beside SQLite.
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# 10 000 pushes, relay SIGKILLed half-way and restarted: every 202 must reach the target
# (on SQLite, and on PostgreSQL at 127.0.0.1:5432, database test).
bench-sigkill: $(STAMP)
	$(BIN)/python bench/sigkill.py

# A store filled to 1 000 000 deliveries; each history query's p99 (--deliveries to run smaller).
bench-history: $(STAMP)
	$(BIN)/python bench/history.py

# Relay's memory as 100 000 deliveries wait for their callbacks (--deliveries to run smaller).
bench-waiting: $(STAMP)
	$(BIN)/python bench/waiting.py

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
