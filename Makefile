# The two set-up commands of the README: `make demo` and `make test` each install what they need first.
PYTHON ?= python3

.PHONY: install demo test lint bench wheel-check

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

# The demo calibrates int8 on 192 of the 256 CIFAR-10 training images binexport ships (validated on the other 64); DEMO_ARGS adds options
# (e.g. DEMO_ARGS="--data-root ~/data" to calibrate on your own training batches).
DEMO_ARGS ?=

demo: install
	$(PYTHON) -m binexport.cli demo $(DEMO_ARGS)

# ruff (lint rules and formatting) and mypy, configured in pyproject.toml; `make test` runs it first.
lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

test: lint
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_pack.py --write-docs

# the built wheel, installed into a fresh virtual env, runs `binexport demo` from its package data alone
wheel-check:
	PYTHON=$(PYTHON) bash scripts/check-wheel.sh
