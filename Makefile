# The two set-up commands of the README: `make demo` and `make test` each install what they need first.
PYTHON ?= python3

.PHONY: install demo test bench

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

demo: install
	$(PYTHON) -m binexport.cli demo

test: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) benchmarks/bench_pack.py --write-docs
