# Two commands do all the set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run demo test lint bench clean

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

test: lint
	$(BIN)/pytest -q --durations=5

lint: $(STAMP)
	$(BIN)/ruff check relay tests bench demo
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
